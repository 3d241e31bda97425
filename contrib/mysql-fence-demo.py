#!/usr/bin/python3
"""A MySQL primary that hangs or is cut off, behind balance or HAProxy.

Two MariaDB servers on loopback, M2 a GTID replica of M1, behind the proxy
under test. Two writers open a new connection per insert and four sessions
stay logged in and write in transactions (BEGIN; INSERT; COMMIT), every row
stamped by the server that took it. After WARMUP seconds M1 hangs (SIGSTOP)
or is cut off (its SYNs dropped by iptables on loopback) for FAULT seconds;
the load goes on for SETTLE seconds more. Then it prints one line of figures:

  writes_m2        rows M2 took itself (not replicated from M1)
  m1_after_m2      rows M1 took after M2's first own row (acked/unacked)
  acked_missing    acknowledged rows not on the server that serves at the end
  errors           client errors (failed connects or statements)
  outage_s         longest time without an acknowledged write
  aborted_m1       M1's Aborted_connects meanwhile (--no-load: the checks' alone)

Needs mariadb-server, python3-pymysql, haproxy (for --proxy haproxy),
iptables (for --fault blackhole) and root. Cleans up after itself.

  contrib/mysql-fence-demo.py --proxy balance --fault hang --balance target/release/balance
  contrib/mysql-fence-demo.py --proxy haproxy --fault blackhole
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pymysql


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, cond, limit=30.0):
    t = time.time() + limit
    while time.time() < t:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


class Server:
    def __init__(self, root, sid):
        self.dir = os.path.join(root, f"m{sid}")
        self.port = free_port()
        os.makedirs(self.dir)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.dir}/data",
                        "--user=root", "--auth-root-authentication-method=normal"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.dir}/data", "--user=root",
             f"--socket={self.dir}/sock", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--skip-name-resolve", "--log-bin=mb", "--log-slave-updates", f"--server-id={sid}",
             "--innodb-buffer-pool-size=32M", f"--log-error={self.dir}/err.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(f"M{sid}", lambda: self.sql("SELECT 1") is not None)

    def sql(self, q):
        c = pymysql.connect(unix_socket=f"{self.dir}/sock", user="root", autocommit=True)
        try:
            with c.cursor() as cur:
                cur.execute(q)
                return cur.fetchall()
        finally:
            c.close()

    def stop(self):
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


def start_proxy(args, root, m1, m2, port):
    if args.proxy == "balance":
        cmd = [args.balance, "-f", "-b", "127.0.0.1", "--spin", "20s", "-t", "1", "-m",
               "mysql:user=chk:max_lag=30s:interval=200ms:rise=2:fall=2",
               "--control", f"{root}/ctl.sock", str(port),
               f"127.0.0.1:{m1.port}", "!", f"127.0.0.1:{m2.port}"]
    else:
        cfg = os.path.join(root, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen mysql
    bind 127.0.0.1:{port}
    option mysql-check user chk post-41
    server m1 127.0.0.1:{m1.port} check inter 2000 rise 3 fall 3
    server m2 127.0.0.1:{m2.port} check inter 2000 rise 3 fall 3 backup
""")
        cmd = ["haproxy", "-f", cfg]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{root}/proxy.log", "w"))
    wait("the proxy", lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None)
    return p


class Load:
    """Writers and sessions; every ack is (id, time, server_id)."""

    def __init__(self, port):
        self.port, self.stop, self.lock = port, False, threading.Lock()
        self.acked, self.errors, self.threads = [], 0, []
        for k in range(2):
            self.threads.append(threading.Thread(target=self.writer, args=(k,)))
        for k in range(2, 6):
            self.threads.append(threading.Thread(target=self.session, args=(k,)))
        for t in self.threads:
            t.start()

    def connect(self):
        return pymysql.connect(host="127.0.0.1", port=self.port, user="app", database="t",
                               autocommit=False, connect_timeout=20)

    def note(self, id_, sid):
        with self.lock:
            self.acked.append((id_, time.time(), sid))

    def fail(self):
        with self.lock:
            self.errors += 1
        time.sleep(0.02)

    def insert(self, c, id_, k):
        with c.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(f"INSERT INTO x (id, v, sid) VALUES ({id_}, {k}, @@server_id)")
            cur.execute("COMMIT")
            cur.execute("SELECT @@server_id")
            return cur.fetchone()[0]

    def writer(self, k):
        i = 0
        while not self.stop:
            i += 1
            id_ = (k + 1) * 1_000_000 + i
            try:
                c = self.connect()
                try:
                    self.note(id_, self.insert(c, id_, k))
                finally:
                    c.close()
            except Exception:
                self.fail()

    def session(self, k):
        i, c = 0, None
        while not self.stop:
            i += 1
            id_ = (k + 1) * 1_000_000 + i
            try:
                if c is None:
                    c = self.connect()
                self.note(id_, self.insert(c, id_, k))
            except Exception:
                c = None
                self.fail()

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", choices=["balance", "haproxy"], default="balance")
    ap.add_argument("--fault", choices=["hang", "blackhole"], default="hang")
    ap.add_argument("--balance", default="balance")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--fault-seconds", type=float, default=10)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--no-load", action="store_true",
                    help="no clients: what the proxy's checks alone leave on M1 (aborted_m1)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="fence-demo-")
    m1 = m2 = proxy = None
    rule = None
    try:
        m1, m2 = Server(root, 1), Server(root, 2)
        m1.sql("CREATE USER 'repl'@'127.0.0.1'")
        m1.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
        m1.sql("CREATE USER 'chk'@'127.0.0.1'")
        m1.sql("GRANT REPLICA MONITOR ON *.* TO 'chk'@'127.0.0.1'")
        m1.sql("CREATE USER 'app'@'127.0.0.1'")
        m1.sql("GRANT ALL ON t.* TO 'app'@'127.0.0.1'")
        m1.sql("CREATE DATABASE t")
        m1.sql("CREATE TABLE t.x (id BIGINT PRIMARY KEY, v INT, "
               "at DATETIME(6) NOT NULL DEFAULT NOW(6), sid INT NOT NULL)")
        m2.sql(f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={m1.port}, "
               "MASTER_USER='repl', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos")
        m2.sql("START SLAVE")
        wait("replication", lambda: m2.sql("SELECT COUNT(*) FROM t.x")[0][0] == 0)
        port = free_port()
        proxy = start_proxy(args, root, m1, m2, port)
        aborted = lambda: int(m1.sql("SHOW GLOBAL STATUS LIKE 'Aborted_connects'")[0][1])
        aborted0 = aborted()
        load = Load(port) if not args.no_load else None
        time.sleep(args.warmup)
        t_fault = time.time()
        if args.fault == "hang":
            m1.proc.send_signal(signal.SIGSTOP)
        else:
            rule = ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(m1.port),
                    "--tcp-flags", "SYN,ACK,FIN,RST", "SYN", "-j", "DROP"]
            subprocess.run(["iptables", "-I"] + rule, check=True)
        time.sleep(args.fault_seconds)
        if args.fault == "hang":
            m1.proc.send_signal(signal.SIGCONT)
        else:
            subprocess.run(["iptables", "-D"] + rule, check=True)
            rule = None
        time.sleep(args.settle)
        if load is None:
            time.sleep(2)
            print(f"{args.proxy} {args.fault} without clients: aborted_m1={aborted() - aborted0}")
            return
        load.finish()
        time.sleep(2)  # let the old primary run what reached it
        serving = pymysql.connect(host="127.0.0.1", port=port, user="app", connect_timeout=20)
        with serving.cursor() as cur:
            cur.execute("SELECT @@server_id")
            serving_sid = cur.fetchone()[0]
        serving.close()
        srv = {1: m1, 2: m2}
        on = {s: {r[0]: (r[1], r[2]) for r in srv[s].sql("SELECT id, UNIX_TIMESTAMP(at), sid FROM t.x")}
              for s in (1, 2)}
        acked = {a[0]: a for a in load.acked}
        m2_own = sorted(t for (t, sid) in on[2].values() if sid == 2)
        first_m2 = m2_own[0] if m2_own else None
        late = [i for i, (t, sid) in on[1].items() if sid == 1 and first_m2 and float(t) > float(first_m2)]
        late_acked = [i for i in late if i in acked]
        missing = [i for i in acked if i not in on[serving_sid]]
        times = sorted(a[1] for a in load.acked if a[1] >= t_fault - 1)
        gaps = [b - a for a, b in zip(times, times[1:])]
        outage = max(gaps) if gaps else float("nan")
        print(f"{args.proxy} {args.fault}: writes_m2={len(m2_own)} "
              f"m1_after_m2={len(late)} (acked {len(late_acked)}) "
              f"acked_missing={len(missing)} (serving M{serving_sid}) errors={load.errors} "
              f"outage_s={outage:.2f} acked={len(load.acked)} aborted_m1={aborted() - aborted0}")
    finally:
        if rule:
            subprocess.run(["iptables", "-D"] + rule)
        if proxy:
            proxy.kill()
            proxy.wait()
        for m in (m1, m2):
            if m:
                m.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
