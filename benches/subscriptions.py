"""Idle subscriptions: what N open `orderUpdated` subscriptions cost one Agora
process, and how long one committed change takes to reach all of them.

Called by run.py (`benches/run.sh --only subscriptions`, and with 50
subscriptions in `--smoke`). Steps, against the `agora` process run.py started:
  1. read the process's RSS (VmRSS in /proc/<pid>/status) and CPU time
     (utime + stime in /proc/<pid>/stat) before any subscription;
  2. open N subscriptions to one order of the bench buyer over
     graphql-transport-ws, `per_socket` on each WebSocket, and wait for the
     first message of each (the order as it is);
  3. stay idle for `idle` seconds and read RSS and CPU time again: CPU % of one
     core while idle, RSS, and RSS per subscription over the baseline;
  4. commit one change of that order the way Agora's writers do (the version
     bumped and `pg_notify('agora_changes', 'order:<id>')` in one transaction,
     sent to an already connected psql) and time, from the moment the
     transaction is sent, when each subscription receives the new version:
     first, median, p99 and last.

The client is one Python process (asyncio + the `websockets` package): with
thousands of sockets its own receive loop is part of the measured latency.
"""

import asyncio
import json
import os
import subprocess
import time

try:
    from websockets.asyncio.client import connect
except ImportError:  # pragma: no cover - told to the user below
    connect = None

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

QUERY = "subscription($id: ID!) { orderUpdated(id: $id) { id status version } }"


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces: split after its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def proc_threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


class Socket:
    """One graphql-transport-ws connection holding `ids` subscriptions."""

    def __init__(self, ws, ids):
        self.ws = ws
        self.ids = ids
        self.version = {}
        self.updated = {}

    async def open(self, order_gid):
        for sid in self.ids:
            await self.ws.send(json.dumps({"id": sid, "type": "subscribe",
                                           "payload": {"query": QUERY, "variables": {"id": order_gid}}}))
        while len(self.version) < len(self.ids):
            m = await self.next()
            self.version[m["id"]] = m["payload"]["data"]["orderUpdated"]["version"]

    async def next(self):
        while True:
            m = json.loads(await self.ws.recv())
            if m.get("type") == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            if m.get("type") == "pong":
                continue
            if m.get("type") != "next" or m.get("payload", {}).get("errors"):
                raise SystemExit(f"bench: subscription answered {json.dumps(m)[:400]}")
            return m

    async def await_update(self):
        while len(self.updated) < len(self.ids):
            m = await self.next()
            if m["payload"]["data"]["orderUpdated"]["version"] > self.version[m["id"]]:
                self.updated.setdefault(m["id"], time.perf_counter())


async def open_socket(ws_url, token, ids, order_gid):
    ws = await connect(ws_url, subprotocols=["graphql-transport-ws"], ping_interval=None,
                       max_queue=None, open_timeout=60)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    ack = json.loads(await ws.recv())
    if ack.get("type") != "connection_ack":
        raise SystemExit(f"bench: connection_init answered {ack}")
    s = Socket(ws, ids)
    await s.open(order_gid)
    return s


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


async def measure(agora_pid, ws_url, db_url, token, order_uuid, order_gid, count, per_socket, idle, log):
    if connect is None:
        raise SystemExit("bench: the subscription benchmark needs the Python package `websockets` "
                         "(benches/setup.sh, or pip install -r benches/requirements.txt)")
    time.sleep(1)
    base_rss, base_cpu, t_base = proc_rss_kib(agora_pid), proc_cpu_secs(agora_pid), time.perf_counter()
    time.sleep(min(idle, 5))
    base_idle_cpu = (proc_cpu_secs(agora_pid) - base_cpu) / (time.perf_counter() - t_base)
    base_rss = proc_rss_kib(agora_pid)

    sockets, sem = [], asyncio.Semaphore(64)
    t_open = time.perf_counter()

    async def one(n):
        ids = [f"s{n}-{k}" for k in range(min(per_socket, count - n * per_socket))]
        async with sem:
            sockets.append(await open_socket(ws_url, token, ids, order_gid))

    n_sockets = (count + per_socket - 1) // per_socket
    await asyncio.gather(*(one(n) for n in range(n_sockets)))
    opened_in = time.perf_counter() - t_open
    log(f"subscriptions: {count} open on {n_sockets} sockets in {opened_in:.1f}s; idle for {idle}s")

    # Idle: nothing changes; the server should do (next to) nothing.
    await asyncio.sleep(1)
    cpu0, t0 = proc_cpu_secs(agora_pid), time.perf_counter()
    await asyncio.sleep(idle)
    idle_cpu = (proc_cpu_secs(agora_pid) - cpu0) / (time.perf_counter() - t0)
    rss = proc_rss_kib(agora_pid)
    threads = proc_threads(agora_pid)
    log(f"subscriptions idle: RSS {rss / 1024:.1f} MiB (before: {base_rss / 1024:.1f} MiB), "
        f"CPU {100 * idle_cpu:.1f} % of a core (before: {100 * base_idle_cpu:.1f} %), {threads} threads")

    # One change, committed the way Agora's writers commit one.
    waiters = [asyncio.create_task(s.await_update()) for s in sockets]
    # psql is started and connected first; the clock starts when the
    # transaction is written to it.
    proc = await asyncio.create_subprocess_exec("psql", db_url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    async def said(marker):
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            if not line:
                raise SystemExit("bench: psql could not commit the change")
            if line.decode().strip() == marker:
                return

    proc.stdin.write(b"SELECT 'ready';\n")
    await said("ready")
    sql = (f"BEGIN; UPDATE orders SET version = version + 1 WHERE id = '{order_uuid}'; "
           f"SELECT pg_notify('agora_changes', 'order:{order_uuid}'); COMMIT; SELECT 'done';\n")
    t_change = time.perf_counter()
    proc.stdin.write(sql.encode())
    await said("done")
    psql_done = time.perf_counter() - t_change
    proc.stdin.close()
    await proc.wait()
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=120)
    lat = [(t - t_change) * 1000.0 for s in sockets for t in s.updated.values()]
    for s in sockets:
        await s.ws.close()

    return dict(
        subscriptions=count, sockets=n_sockets, per_socket=per_socket, idle_secs=idle, opened_secs=opened_in,
        base_rss_mib=base_rss / 1024, base_idle_cpu_pct=100 * base_idle_cpu,
        rss_mib=rss / 1024, rss_per_sub_kib=(rss - base_rss) / count, idle_cpu_pct=100 * idle_cpu,
        threads=threads, psql_ms=psql_done * 1000.0,
        first_ms=min(lat), p50_ms=pct(lat, 0.5), p99_ms=pct(lat, 0.99), last_ms=max(lat), received=len(lat),
    )


def run(agora_pid, agora_url, db_url, token, order_uuid, order_gid, count, per_socket, idle, log):
    ws_url = agora_url.replace("http://", "ws://") + "/ws"
    return asyncio.run(measure(agora_pid, ws_url, db_url, token, order_uuid, order_gid, count, per_socket,
                               idle, log))


def print_table(rows):
    print()
    print("| binary | subscriptions | sockets | RSS before MiB | RSS idle MiB | KiB per subscription "
          "| CPU idle before % | CPU idle with them % | change → first ms | p50 ms | p99 ms | last ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {r['subscriptions']:,} | {r['sockets']:,} | {r['base_rss_mib']:.1f} | {r['rss_mib']:.1f} "
              f"| {r['rss_per_sub_kib']:.1f} | {r['base_idle_cpu_pct']:.1f} | {r['idle_cpu_pct']:.1f} "
              f"| {r['first_ms']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['last_ms']:.1f} |")
    print()
    for label, r in rows:
        print(f"{label}: the change's transaction took {r['psql_ms']:.1f} ms until psql had its answer; "
              f"{r['received']} of {r['subscriptions']} received it; "
              f"{r['threads']} threads; opened in {r['opened_secs']:.1f}s")
