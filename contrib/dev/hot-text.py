#!/usr/bin/env python3
"""Regenerate build/hot-text.txt: the functions of the release binary that run
from start to idle and for a few proxied connections, started from the
command line (`-b`) and from a config file (as the systemd unit does).

build.rs places these functions together at the start of the code (a linker
script, release builds only). The kernel maps code in 64 KiB windows (or whole
page-cache folios) around each page an instance touches, so startup code
scattered over the 4 MB text made every idle instance map ~2.7 MB of it;
clustered, it is ~0.6 MB.

Names are mangled symbols. A name that no longer exists (code changed, other
rustc) matches nothing and costs nothing; the clustering only gets looser.
Rerun after larger changes or a toolchain update:

    cargo build --release && python3 contrib/dev/hot-text.py

Needs valgrind. `--check` only reports how many listed names the current
release binary still has.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "balance")
LIST = os.path.join(ROOT, "build", "hot-text.txt")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_backend():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)

    def echo(c):
        with c:
            while data := c.recv(4096):
                c.sendall(data)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def wait_listening(port, proc, timeout=60.0):
    """Polls the listening table, not the port: a probe would be a proxied
    connection."""
    end = time.time() + timeout
    needle = f"0100007F:{port:04X} 00000000:0000 0A"
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"balance exited early ({proc.returncode})")
        with open("/proc/net/tcp") as f:
            if needle in f.read():
                return
        time.sleep(0.2)
    sys.exit("balance did not listen in time")


def exchange(port):
    """One proxied connection: 1000 bytes echoed, then a half-close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"x" * 1000)
        got = b""
        while len(got) < 1000:
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
        c.shutdown(socket.SHUT_WR)
        c.recv(10)


def hold(port, n):
    """`n` connections open at once (tables and slabs grow), then closed."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for c in conns:
        c.sendall(b"y")
    for c in conns:
        c.recv(10)
        c.close()


def scrape(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        while c.recv(65536):
            pass


def run_profile(out, tmp, config, traffic):
    """Start to idle, with `traffic` a few connections, then a stop. With
    `config`, the way systemd runs it (`--config`, a backend host name,
    a health check, metrics, one scrape); without, the single listener of
    the command line."""
    backend = echo_backend()
    port, metrics = free_port(), free_port()
    target = f"127.0.0.1:{backend.getsockname()[1]}"
    if config:
        # A host name, re-resolved within the idle time: getaddrinfo on
        # the blocking pool is idle work too.
        target = f"localhost:{backend.getsockname()[1]}"
        path = os.path.join(tmp, "balance.yaml")
        with open(path, "w") as f:
            f.write(
                f'metrics: "127.0.0.1:{metrics}"\n'
                "resolve_interval: 1s\n"
                "listeners:\n"
                f'  - name: svc\n    bind: "127.0.0.1:{port}"\n'
                f'    groups:\n      - channels: ["{target}"]\n'
                "    monitor:\n      interval: 1s\n"
                "      checks:\n        - connect: { timeout: 1s }\n"
            )
        args = ["-f", "--config", path]
    else:
        args = ["-f", "-b", "127.0.0.1", str(port), target]
    cmd = ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}", BIN]
    proc = subprocess.Popen(cmd + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        time.sleep(2.5)  # idle: timers, health checks
        for _ in range(5 if traffic else 0):
            exchange(port)
        if traffic:
            hold(port, 500)
        if config and traffic:
            scrape(metrics)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        backend.close()


def functions_run(cg, ours):
    """The functions in callgrind's output that the binary defines (`ours`),
    in the order listed. Callgrind sometimes files the binary's functions
    under an unknown object, so they are told apart by name."""
    order = []
    name_re = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")
    with open(cg) as f:
        for line in f:
            m = name_re.match(line.rstrip("\n"))
            if not m:
                continue
            name = m.group(2)
            if name:
                if name in ours and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.]*", name):
                    order.append(name)
    return list(dict.fromkeys(order))


LEGACY_HASH = re.compile(r"17h[0-9a-f]{16}E")


def robust(order, ours):
    """A legacy-mangled name whose hash (it changes with any change to the
    crate graph or the release profile) can go becomes a pattern (`17h*E*`)
    when no other function of the binary has the same name without it."""
    stem = lambda s: LEGACY_HASH.sub("17h*E", re.sub(r"\.llvm\.\d+$", "", s))
    count = {}
    for s in ours:
        count[stem(s)] = count.get(stem(s), 0) + 1
    out = []
    for s in order:
        t = stem(s)
        # The trailing `*` also takes ThinLTO's `.llvm.<hash>` suffix.
        out.append(t + "*" if "*" in t and count[t] == 1 else s)
    return list(dict.fromkeys(out))


def symbols_of_binary():
    out = subprocess.run(["nm", "--defined-only", BIN], capture_output=True, text=True, check=True)
    return {f[2] for f in map(str.split, out.stdout.splitlines()) if len(f) == 3 and f[1] in "tTwW"}


def main():
    if "--check" in sys.argv:
        listed = [s for s in open(LIST).read().split() if s]
        strip = lambda s: re.sub(r"\.llvm\.\d+$", "", s)
        have = {strip(s) for s in symbols_of_binary()}
        stems = {LEGACY_HASH.sub("17h*E", s) for s in have}
        found = sum(1 for s in listed if strip(s) in have or s.rstrip("*") in stems)
        print(f"{found} of {len(listed)} listed functions are in {BIN}")
        return
    ours = symbols_of_binary()
    order = []
    with tempfile.TemporaryDirectory() as d:
        # What runs to idle first (it is what every idle instance maps),
        # then what connections and scrapes add.
        for traffic in (False, True):
            for config in (False, True):
                out = os.path.join(d, "callgrind.out")
                run_profile(out, d, config, traffic)
                order += [f for f in functions_run(out, ours) if f not in order]
                mode = "--config" if config else "-b"
                print(f"{mode}, {'traffic' if traffic else 'idle'}: {len(order)} functions so far")
    order = robust(order, ours)
    with open(LIST, "w") as f:
        f.write("\n".join(order) + "\n")
    print(f"{len(order)} functions written to {LIST}")


if __name__ == "__main__":
    main()
