#!/usr/bin/env python3
"""Two balance binaries' CPU cost per connection, side by side: both run
the same plain listener (`balance -f -b 127.0.0.1 PORT BACKEND`) pinned to
CPU 1, the clients (8 threads, one byte each way per connection) on CPU
0; rounds interleaved (A B, B A, ...), so a drift of the machine hits both.
Reports each one's CPU time per connection (utime + stime from /proc) and
the ratio of the medians. Finer than l4bench's churn row for telling two
builds of balance apart: only the proxy's own CPU is counted, per round.

Usage: ab-churn.py A_BIN B_BIN [CONNECTIONS [ROUNDS]]
Python 3 stdlib, taskset."""
import os, socket, subprocess, sys, time, statistics

from churnlib import backend, churn, cpu, free

A, B = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 10


def start(binary, bport):
    port = free()
    p = subprocess.Popen(['taskset', '-c', '1', binary, '-f', '-b', '127.0.0.1', str(port),
                          f'127.0.0.1:{bport}'], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(('127.0.0.1', port)).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    sys.exit(f'{binary} did not start')


bport = backend(b'x')
os.sched_setaffinity(0, {0})
procs = {'A': start(A, bport), 'B': start(B, bport)}
for p, port in procs.values():
    churn(port, 800, b'x')  # warm-up
res = {'A': [], 'B': []}
for r in range(ROUNDS):
    for name in ('A', 'B') if r % 2 == 0 else ('B', 'A'):
        p, port = procs[name]
        c0 = cpu(p.pid)
        n = churn(port, N, b'x')
        res[name].append((cpu(p.pid) - c0) / n * 1e6)
for p, _ in procs.values():
    p.terminate()
    p.wait()
m = statistics.median
for name, b in (('A', A), ('B', B)):
    print(f'{name} {b}: CPU us/conn median {m(res[name]):5.1f} (runs {", ".join(f"{x:.1f}" for x in res[name])})')
print(f'B/A CPU per connection: {m(res["B"]) / m(res["A"]):.3f}')
