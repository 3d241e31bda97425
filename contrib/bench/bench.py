#!/usr/bin/env python3
"""Compare balance with a direct connection and with HAProxy on this machine.

Loopback only (127.0.0.1). The proxy runs pinned to one CPU, the clients and
backends to another (like l4bench, which measured docs/performance.md). Workloads:

  bulk1 / bulk4  iperf3, 1 and 4 streams           -> Gbit/s (receiver)
  rr             redis-benchmark, 50 persistent conns -> req/s, p50/p99 ms
  churn          redis-benchmark -k 0 (new conn per request) -> conn/s
  idle           N idle connections that each echoed 1 byte -> RSS KiB/conn
                 (and the proxy's RSS before them, MiB)

Each figure is the median of --rounds interleaved rounds, with the proxy's
CPU time as a percentage of one core. A second table gives the cost: proxy
CPU time per GB (bulk), per request (rr) and per connection (churn), with
the ratio to the cheapest other proxy of the same run. Standard tools only: python3 (stdlib),
iperf3, redis-server, redis-benchmark, taskset, optionally haproxy.

  contrib/bench/bench.py --balance target/release/balance
  contrib/bench/bench.py --balance target/release/balance --rounds 3 \
      --proxies direct,balance,balance-nosplice,haproxy,haproxy-splice
"""

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except OSError:
        return 0


def listening(port):
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[1] == want and p[3] == "0A":
                return True
    return False


def wait_listen(port, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before listening on {port}")
        if listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start(cmd, cpu, **kw):
    return subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **kw)


def stop(p):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(3)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(3)


def proxy_cmd(name, a, port, bport, workdir):
    if name.startswith("balance"):
        cmd = [a.balance, "-f", "-b", HOST, str(port), f"{HOST}:{bport}"]
        if name == "balance-nosplice":
            cmd.insert(2, "--no-splice")
        return cmd
    if name.startswith("haproxy"):
        cfg = os.path.join(workdir, f"{name}.cfg")
        extra = "    option splice-request\n    option splice-response\n" if name == "haproxy-splice" else ""
        with open(cfg, "w") as f:
            f.write("global\n    nbthread 1\n    maxconn 7800\n"
                    "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 10m\n    timeout server 10m\n"
                    f"listen l\n    bind {HOST}:{port}\n{extra}    server s1 {HOST}:{bport}\n")
        return ["haproxy", "-db", "-f", cfg]
    raise SystemExit(f"unknown proxy {name}")


def with_proxy(name, a, bport, workdir, fn):
    """Run fn(client_port, proxy_pid) with the proxy up (or direct)."""
    if name == "direct":
        return fn(bport, None)
    port = free_port()
    p = start(proxy_cmd(name, a, port, bport, workdir), a.proxy_cpu)
    try:
        wait_listen(port, p)
        time.sleep(0.3)
        return fn(port, p.pid)
    finally:
        stop(p)


def timed(pid, fn):
    t0, w0 = (cpu_ticks(pid) if pid else 0), time.time()
    res = fn()
    t1, w1 = (cpu_ticks(pid) if pid else 0), time.time()
    res["cpu_pct"] = round(100.0 * (t1 - t0) / TCK / (w1 - w0), 1) if pid else None
    return res


def bulk(name, a, workdir, streams):
    bport = free_port()
    srv = start(["iperf3", "-s", "-1", "-B", HOST, "-p", str(bport)], a.load_cpu)
    try:
        wait_listen(bport, srv)

        def client(port, pid):
            def run():
                out = subprocess.run(["taskset", "-c", str(a.load_cpu), "iperf3", "-c", HOST, "-p", str(port),
                                      "-t", str(a.seconds), "-O", "1", "-P", str(streams), "-J"],
                                     capture_output=True, text=True, timeout=a.seconds + 60)
                d = json.loads(out.stdout)
                return {"gbps": round(d["end"]["sum_received"]["bits_per_second"] / 1e9, 2)}
            return timed(pid, run)
        return with_proxy(name, a, bport, workdir, client)
    finally:
        stop(srv)


def redis(name, a, workdir, churn):
    bport = free_port()
    srv = start(["redis-server", "--port", str(bport), "--bind", HOST, "--save", "", "--appendonly", "no"],
                a.load_cpu)
    try:
        wait_listen(bport, srv)

        def client(port, pid):
            def run():
                n = a.churn_requests if churn else a.rr_requests
                cmd = ["taskset", "-c", str(a.load_cpu), "redis-benchmark", "-h", HOST, "-p", str(port),
                       "-t", "ping_mbulk", "-c", "20" if churn else "50", "-n", str(n), "--csv"]
                if churn:
                    cmd += ["-k", "0"]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
                rows = list(csv.reader(io.StringIO(out.stdout)))
                row = rows[-1]
                hdr = rows[0]
                get = dict(zip(hdr, row))
                return {"rps": float(get["rps"]), "p50": float(get["p50_latency_ms"]),
                        "p99": float(get["p99_latency_ms"])}
            return timed(pid, run)
        return with_proxy(name, a, bport, workdir, client)
    finally:
        stop(srv)


async def _echo_hold(reader, writer):
    try:
        while True:
            b = await reader.read(1)
            if not b:
                break
            writer.write(b)
            await writer.drain()
    except OSError:
        pass
    writer.close()


async def _idle(port, n, bport):
    conns = []
    sem = asyncio.Semaphore(200)

    async def one():
        async with sem:
            r, w = await asyncio.open_connection(HOST, port)
            w.write(b"x")
            await w.drain()
            await asyncio.wait_for(r.readexactly(1), 30)
            conns.append(w)
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), 120)
    return conns


def idle(name, a, workdir):
    """RSS growth of the proxy per idle connection (each echoed 1 byte)."""
    bport = free_port()
    loop = asyncio.new_event_loop()
    srv = loop.run_until_complete(asyncio.start_server(_echo_hold, HOST, bport, backlog=4096))

    def client(port, pid):
        if pid is None:
            return {"kib_per_conn": None}
        before = rss_kib(pid)
        conns = loop.run_until_complete(_idle(port, a.idle_conns, bport))
        loop.run_until_complete(asyncio.sleep(1))
        after = rss_kib(pid)
        for w in conns:
            w.close()
        return {"kib_per_conn": round((after - before) / a.idle_conns, 2),
                "rss_before_mib": round(before / 1024, 1), "rss_after_mib": round(after / 1024, 1)}
    try:
        return with_proxy(name, a, bport, workdir, client)
    finally:
        srv.close()
        loop.run_until_complete(srv.wait_closed())
        loop.close()


# Proxy CPU time per unit of work: (unit label, scale, rate key, rate -> units/s).
COST = {
    "bulk1": ("CPU ms/GB", 1e3, "gbps", lambda v: v / 8),
    "bulk4": ("CPU ms/GB", 1e3, "gbps", lambda v: v / 8),
    "rr": ("CPU µs/request", 1e6, "rps", lambda v: v),
    "churn": ("CPU µs/connection", 1e6, "rps", lambda v: v),
}


def cost(res, w):
    """Proxy CPU seconds per unit of work of one run, scaled (None if unknown)."""
    _, scale, key, per_s = COST[w]
    rate, cpu = res.get(key), res.get("cpu_pct")
    if not rate or cpu is None:
        return None
    return cpu / 100.0 * scale / per_s(rate)


def print_costs(results, proxies, workloads):
    """The cost table: median over the rounds of each run's proxy CPU per unit
    of work, with the ratio to the cheapest *other* proxy of the same run.
    When the client/backend CPU saturates, throughput says little about a
    proxy; its CPU per unit of work still compares proxies fairly."""
    ws = [w for w in workloads if w in COST]
    if not ws:
        return
    med = {}
    for p in proxies:
        for w in ws:
            v = [c for c in (cost(x, w) for x in results.get((p, w), [])) if c is not None]
            med[(p, w)] = statistics.median(v) if v else None
    print("\nproxy CPU time per unit of work (median over the rounds); (x×) = ratio to the cheapest other proxy\n")
    print("| proxy | " + " | ".join(f"{w} {COST[w][0]}" for w in ws) + " |")
    print("|---|" + "---:|" * len(ws))
    for p in proxies:
        if p == "direct":
            continue
        cells = []
        for w in ws:
            v = med[(p, w)]
            others = [med[(q, w)] for q in proxies if q not in (p, "direct") and med[(q, w)]]
            if v is None:
                cells.append("—")
            elif others:
                cells.append(f"{v:,.1f} ({v / min(others):.2f}×)")
            else:
                cells.append(f"{v:,.1f}")
        print(f"| {p} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--balance", default="target/release/balance", help="balance binary")
    ap.add_argument("--proxies", default="direct,balance,haproxy,haproxy-splice")
    ap.add_argument("--workloads", default="bulk1,bulk4,rr,churn,idle")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6, help="iperf3 -t")
    ap.add_argument("--rr-requests", type=int, default=200000)
    ap.add_argument("--churn-requests", type=int, default=20000)
    ap.add_argument("--idle-conns", type=int, default=5000)
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--json", help="write raw results here")
    a = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    a.balance = os.path.abspath(a.balance)
    proxies = [p for p in a.proxies.split(",") if p]
    for p in proxies:
        if p.startswith("haproxy") and not shutil.which("haproxy"):
            print(f"skipping {p}: haproxy not installed", file=sys.stderr)
            proxies.remove(p)
    workloads = a.workloads.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(a.rounds):
            order = proxies[r % len(proxies):] + proxies[:r % len(proxies)]
            for w in workloads:
                for p in order:
                    try:
                        if w in ("bulk1", "bulk4"):
                            res = bulk(p, a, workdir, 1 if w == "bulk1" else 4)
                        elif w in ("rr", "churn"):
                            res = redis(p, a, workdir, w == "churn")
                        else:
                            res = idle(p, a, workdir)
                    except Exception as e:  # a failed run is reported, not fatal
                        res = {"error": str(e)}
                    print(f"round {r + 1} {w:6} {p:18} {res}", file=sys.stderr, flush=True)
                    results.setdefault((p, w), []).append(res)
    key = {"bulk1": "gbps", "bulk4": "gbps", "rr": "rps", "churn": "rps", "idle": "kib_per_conn"}

    def med(p, w, k):
        v = [x[k] for x in results.get((p, w), []) if x.get(k) is not None]
        return statistics.median(v) if v else None
    print(f"\nmedians of {a.rounds} rounds; (x) = ratio to direct; cpu = proxy CPU % of one core\n")
    print("| proxy | " + " | ".join(workloads) + " |")
    print("|---|" + "---:|" * len(workloads))
    for p in proxies:
        cells = []
        for w in workloads:
            v = med(p, w, key[w])
            d = med("direct", w, key[w])
            if v is None:
                cells.append("—")
                continue
            s = f"{v:,.2f}" if w != "rr" and w != "churn" else f"{v:,.0f}"
            if d and w != "idle":
                s += f" ({v / d:.2f}×)"
            if w in ("rr", "churn"):
                s += f" p99 {med(p, w, 'p99')}"
            if w == "idle" and med(p, w, "rss_before_mib") is not None:
                s += f" KiB/conn, idle {med(p, w, 'rss_before_mib')} MiB"
            c = med(p, w, "cpu_pct")
            if c is not None:
                s += f" cpu {c:.0f}%"
            cells.append(s)
        print(f"| {p} | " + " | ".join(cells) + " |")
    print_costs(results, proxies, workloads)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({f"{p}/{w}": v for (p, w), v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
