#!/usr/bin/env python3
"""Fleet mode at scale on one machine: N balance instances, each with S
listeners (services), against one etcd member; what it costs etcd and
balance, and how far apart the instances decide.

Phases (each bounded):
  1. standalone: the instances without `fleet:` for --measure seconds (the
     CPU they use probing alone: the baseline);
  2. fleet: the same instances with `fleet:` (restarted), settled, then
     --measure seconds: etcd's request rate, watchers, memory and CPU
     (its /metrics), and the instances' CPU;
  3. decision spread: one service's primary is closed; the time from
     then until each instance's metrics show it down (polled in parallel),
     first and last.

Everything binds 127.0.0.1 on ports from --port-base upwards, each checked
free before use; every process started is stopped by its pid at the end
(also on error or Ctrl-C). Python 3 standard library only.

    cargo build --release
    contrib/bench/fleet_scale.py --balance target/release/balance \\
        --instances 50 --services 5 --measure 30
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MAX_INSTANCES = 200
MAX_SERVICES = 20
MAX_MEASURE = 600


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Ports:
    """Hands out ports from `base` up, each found free first."""

    def __init__(self, base, limit):
        self.next = base
        self.limit = base + limit

    def take(self):
        while self.next < self.limit:
            p = self.next
            self.next += 1
            if port_free(p):
                return p
        sys.exit(f"no free port left below {self.limit}")


class Backend:
    """Accepts connections and closes them (a `connect` check passes)."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(512)
        self.stopped = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
                c.close()
            except OSError:
                return

    def stop(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scrape(port, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return r.read().decode()


def metric_sum(text, name, match=""):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and match in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Run:
    def __init__(self, a):
        self.a = a
        self.dir = tempfile.mkdtemp(prefix="balance-fleet-scale-")
        self.procs = []
        self.ports = Ports(a.port_base, a.port_span)

    def start(self, argv, log):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(log, "w"))
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        for p in self.procs:
            self.stop(p)
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait(self, what, limit, cond):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.1)
        sys.exit(f"timed out after {limit}s waiting for {what}")

    def etcd(self):
        self.etcd_port, peer = self.ports.take(), self.ports.take()
        url = f"http://127.0.0.1:{self.etcd_port}"
        purl = f"http://127.0.0.1:{peer}"
        self.etcd_proc = self.start([
            self.a.etcd, "--data-dir", os.path.join(self.dir, "etcd"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
            "--initial-cluster", f"default={purl}", "--log-level", "warn",
        ], os.path.join(self.dir, "etcd.log"))

        def up():
            try:
                return "etcd_server_has_leader 1" in scrape(self.etcd_port)
            except OSError:
                return False
        self.wait("etcd", 30, up)

    def yaml(self, i, fleet):
        out = ""
        if fleet:
            out += (f"fleet:\n  endpoints: [\"http://127.0.0.1:{self.etcd_port}\"]\n"
                    f"  prefix: /scale\n  id: inst-{i}\n")
        out += "listeners:\n"
        for s in range(self.a.services):
            pri, bak = self.backends[s]
            out += (f"  - name: svc{s}\n    bind: \"127.0.0.1:{self.listen[i][s]}\"\n"
                    f"    groups:\n      - channels: [\"127.0.0.1:{pri.port}\"]\n"
                    f"      - channels: [\"127.0.0.1:{bak.port}\"]\n"
                    f"    monitor:\n      interval: {self.a.interval}\n      fall: 2\n"
                    f"      rise: 2\n      checks:\n        - connect: {{}}\n")
        return out

    def instances(self, fleet):
        self.inst = []
        for i in range(self.a.instances):
            d = os.path.join(self.dir, f"i{i}")
            os.makedirs(d, exist_ok=True)
            cfg = os.path.join(d, "balance.yaml")
            with open(cfg, "w") as f:
                f.write(self.yaml(i, fleet))
            p = self.start([self.a.balance, "-f", "--config", cfg, "--metrics",
                            f"127.0.0.1:{self.metrics[i]}", "--control", d],
                           os.path.join(d, "stderr.log"))
            self.inst.append(p)
            time.sleep(self.a.gap)
        for i, p in enumerate(self.inst):
            def up(i=i, p=p):
                if p.poll() is not None:
                    log = open(os.path.join(self.dir, f"i{i}", "stderr.log")).read()
                    sys.exit(f"instance {i} exited: {log}")
                try:
                    scrape(self.metrics[i])
                    return True
                except OSError:
                    return False
            self.wait(f"instance {i}", 30, up)

    def stop_instances(self):
        for p in self.inst:
            self.stop(p)

    def cpu_over(self, seconds, pids):
        before = {p: cpu_ticks(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(seconds)
        el = time.monotonic() - t0
        hz = os.sysconf("SC_CLK_TCK")
        return {p: (cpu_ticks(p) - before[p]) / hz / el for p in pids}

    def settled(self):
        """Every service: one prober, the rest following."""
        roles = {}
        for i in range(self.a.instances):
            text = scrape(self.metrics[i])
            for s in range(self.a.services):
                for role in ("prober", "follower", "alone"):
                    if metric_sum(text, "balance_fleet_role",
                                  f'listener="svc{s}",role="{role}"') == 1.0:
                        roles.setdefault(s, []).append(role)
        return all(r.count("prober") == 1 and r.count("follower") == len(r) - 1
                   and len(r) == self.a.instances for r in roles.values()) \
            and len(roles) == self.a.services

    def main(self):
        a = self.a
        self.etcd()
        self.backends = [(Backend(self.ports.take()), Backend(self.ports.take()))
                         for _ in range(a.services)]
        self.listen = [[self.ports.take() for _ in range(a.services)]
                       for _ in range(a.instances)]
        self.metrics = [self.ports.take() for _ in range(a.instances)]
        res = {"instances": a.instances, "services": a.services, "interval": a.interval,
               "measure_s": a.measure}

        # 1. standalone
        self.instances(False)
        time.sleep(a.settle)
        cpu = self.cpu_over(a.measure, [p.pid for p in self.inst])
        res["standalone_cpu_per_instance_pct"] = round(100 * sum(cpu.values()) / len(cpu), 3)
        res["standalone_rss_kib_median"] = sorted(rss_kib(p.pid) for p in self.inst)[len(self.inst) // 2]
        self.stop_instances()

        # 2. fleet
        self.instances(True)
        self.wait("the fleet to settle", 120, self.settled)
        time.sleep(a.settle)
        m0 = scrape(self.etcd_port)
        cpu = self.cpu_over(a.measure, [p.pid for p in self.inst] + [self.etcd_proc.pid])
        m1 = scrape(self.etcd_port)
        ecpu = cpu.pop(self.etcd_proc.pid)
        res["fleet_cpu_per_instance_pct"] = round(100 * sum(cpu.values()) / len(cpu), 3)
        res["fleet_rss_kib_median"] = sorted(rss_kib(p.pid) for p in self.inst)[len(self.inst) // 2]
        res["added_cpu_per_instance_pct"] = round(
            res["fleet_cpu_per_instance_pct"] - res["standalone_cpu_per_instance_pct"], 3)
        d = lambda n, m="": metric_sum(m1, n, m) - metric_sum(m0, n, m)
        res["etcd_requests_per_s"] = round(d("grpc_server_handled_total") / a.measure, 1)
        for method in ("Range", "Txn", "Put", "LeaseKeepAlive", "LeaseGrant", "Watch"):
            res[f"etcd_{method}_per_s"] = round(
                d("grpc_server_handled_total", f'grpc_method="{method}"') / a.measure, 1)
        res["etcd_grpc_started_per_s"] = round(d("grpc_server_started_total") / a.measure, 1)
        res["etcd_watchers"] = metric_sum(m1, "etcd_debugging_mvcc_watcher_total")
        res["etcd_watch_streams"] = metric_sum(m1, "etcd_debugging_mvcc_watch_stream_total")
        res["etcd_rss_mib"] = round(metric_sum(m1, "process_resident_memory_bytes") / 2**20, 1)
        res["etcd_db_mib"] = round(metric_sum(m1, "etcd_mvcc_db_total_size_in_bytes") / 2**20, 2)
        res["etcd_cpu_pct"] = round(100 * ecpu, 1)
        res["etcd_revisions_per_s"] = round(
            (metric_sum(m1, "etcd_debugging_mvcc_current_revision")
             - metric_sum(m0, "etcd_debugging_mvcc_current_revision")) / a.measure, 1)

        # 3. decision spread: service 0's primary closed
        pri = self.backends[0][0]
        label = (f'listener="svc0",group="0",index="0",channel="127.0.0.1:{pri.port}",'
                 'state="ENA"')
        times = [None] * a.instances
        t0 = time.monotonic()
        pri.stop()

        def poll(i):
            end = t0 + 60
            while time.monotonic() < end:
                try:
                    if metric_sum(scrape(self.metrics[i], 1.0), "balance_channel_state", label) == 0.0:
                        times[i] = time.monotonic() - t0
                        return
                except OSError:
                    pass
                time.sleep(a.poll)
        ts = [threading.Thread(target=poll, args=(i,)) for i in range(a.instances)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        seen = [t for t in times if t is not None]
        res["primary_down_seen_by"] = f"{len(seen)}/{a.instances}"
        if seen:
            res["primary_down_first_s"] = round(min(seen), 3)
            res["primary_down_spread_s"] = round(max(seen) - min(seen), 3)
        res["load_average"] = [round(x, 1) for x in os.getloadavg()]
        res["fleet_log_warnings"] = self.warnings()
        print(json.dumps(res, indent=2))

    def warnings(self):
        """The fleet phase's warnings, counted by kind (digits dropped)."""
        kinds = {}
        for i in range(self.a.instances):
            with open(os.path.join(self.dir, f"i{i}", "stderr.log")) as f:
                for line in f:
                    if " WARN " not in line and " ERROR " not in line:
                        continue
                    msg = line.split(" ", 2)[-1]
                    key = "".join("#" if c.isdigit() else c for c in msg)[:140]
                    kinds[key] = kinds.get(key, 0) + 1
        return dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:8])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--balance", default="target/release/balance")
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--instances", type=int, default=50)
    ap.add_argument("--services", type=int, default=5)
    ap.add_argument("--interval", default="1s", help="each monitor's interval")
    ap.add_argument("--measure", type=int, default=30, help="seconds per measured phase")
    ap.add_argument("--settle", type=int, default=5, help="seconds before measuring")
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between starts")
    ap.add_argument("--poll", type=float, default=0.02,
                    help="seconds between two scrapes of one instance (spread)")
    ap.add_argument("--port-base", type=int, default=31000)
    ap.add_argument("--port-span", type=int, default=2000)
    a = ap.parse_args()
    if not (1 <= a.instances <= MAX_INSTANCES and 1 <= a.services <= MAX_SERVICES
            and 1 <= a.measure <= MAX_MEASURE):
        sys.exit(f"bounds: instances 1-{MAX_INSTANCES}, services 1-{MAX_SERVICES}, "
                 f"measure 1-{MAX_MEASURE} s")
    r = Run(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        r.main()
    finally:
        r.close()


if __name__ == "__main__":
    main()
