"""What sni-churn.py and ab-churn.py share: a backend that reads a
client's first bytes and answers one byte, the clients that churn through
a proxy, and a process's CPU time. Python 3 stdlib."""
import os, socket, threading

CLIENTS = 8


def backend(first):
    """A backend on a free loopback port: reads len(first) bytes, answers
    b'x', closes. Returns the port."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', 0))
    s.listen(1024)

    def serve(c):
        try:
            got = 0
            while got < len(first):
                d = c.recv(65536)
                if not d:
                    break
                got += len(d)
            c.sendall(b'x')
        finally:
            c.close()

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]


def free():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu(pid):
    """utime + stime of `pid`, in seconds."""
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')


def churn(port, n, first):
    """n connections through `port` from CLIENTS threads, each sending
    `first` and reading the one-byte answer. Returns the count made."""
    per = n // CLIENTS

    def one():
        for _ in range(per):
            c = socket.create_connection(('127.0.0.1', port))
            c.sendall(first)
            assert c.recv(1) == b'x'
            c.close()

    ts = [threading.Thread(target=one) for _ in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * CLIENTS
