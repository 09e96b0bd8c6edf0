#!/usr/bin/env bash
# The side-by-side read benchmark (see BENCHMARKS.md). Examples:
#   benches/setup.sh                      # wrk, pgbench, PostGraphile v5 + Node 22 into benches/.deps
#   benches/run.sh                        # 10k providers / 100k listings / 300k reviews, 32 and 128 connections
#   benches/run.sh --size 1m              # 1M listings
#   benches/run.sh --smoke                # tiny data, 2 s per query (whatever is installed)
# Environment: BENCH_DATABASE_URL (default TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres),
# AGORA_BIN (skip the release build), CARGO_TARGET_DIR.
set -euo pipefail
exec python3 "$(cd "$(dirname "$0")" && pwd)/run.py" "$@"
