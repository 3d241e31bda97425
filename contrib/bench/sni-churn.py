#!/usr/bin/env python3
"""The cost of routing by SNI: connection churn with a TLS ClientHello as
each client's first bytes, through two listeners of one balance process
(pinned to CPU 1): `routed` (route: by: sni, the name found in the map)
and `plain` (no route:), same backend, same bytes, rounds interleaved.
Reports balance's CPU time per connection (utime + stime from /proc) for
each, and the ratio of the medians.

Usage: sni-churn.py BALANCE_BIN HELLO_FILE [CONNECTIONS [ROUNDS]]
HELLO_FILE: a ClientHello naming app.example.com, e.g.
fuzz/corpus/sni/seed-openssl-sni (captured from
`openssl s_client -servername app.example.com`). Python 3 stdlib, taskset."""
import os, socket, subprocess, sys, time, statistics

from churnlib import backend, churn, cpu, free

BIN = sys.argv[1]
HELLO = open(sys.argv[2], 'rb').read()
N = int(sys.argv[3]) if len(sys.argv) > 3 else 4000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 5

bport = backend(HELLO)
plain, routed = free(), free()
cfg = f'''listeners:
  - name: plain
    bind: "127.0.0.1:{plain}"
    groups:
      - channels: ["127.0.0.1:{bport}"]
  - name: routed
    bind: "127.0.0.1:{routed}"
    groups:
      - channels: ["127.0.0.1:{bport}"]
      - channels: ["127.0.0.1:{bport}"]
    route:
      by: sni
      map:
        app.example.com: "0"
      default: "1"
'''
import tempfile
yaml = os.path.join(tempfile.mkdtemp(prefix='sni-churn-'), 'b.yaml')
open(yaml, 'w').write(cfg)
os.sched_setaffinity(0, {0})
p = subprocess.Popen(['taskset', '-c', '1', BIN, '-f', '--config', yaml],
                     stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        socket.create_connection(('127.0.0.1', routed)).close(); break
    except OSError: time.sleep(0.05)
churn(plain, 800, HELLO); churn(routed, 800, HELLO)  # warm-up
res = {'plain': [], 'routed': []}
for r in range(ROUNDS):
    for name, port in ([('plain', plain), ('routed', routed)] if r % 2 == 0 else [('routed', routed), ('plain', plain)]):
        c0, t0 = cpu(p.pid), time.time(); n = churn(port, N, HELLO); c1, dt = cpu(p.pid), time.time() - t0
        res[name].append(((c1 - c0) / n * 1e6, n / dt))
p.terminate(); p.wait()
for name, v in res.items():
    us = [x[0] for x in v]; cps = [x[1] for x in v]
    print(f'{name:7s} CPU us/conn median {statistics.median(us):6.1f} (runs {", ".join(f"{x:.1f}" for x in us)}); conn/s median {statistics.median(cps):.0f}')
m = statistics.median
print(f'routed/plain CPU per connection: {m([x[0] for x in res["routed"]]) / m([x[0] for x in res["plain"]]):.3f}')
