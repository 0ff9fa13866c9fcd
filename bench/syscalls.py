"""System calls per close, counted with strace.

    python -m bench.syscalls                 # every case, N=1000: a table
    python -m bench.syscalls --n 2000 --case graceful,drain_many
    python -m bench.syscalls --run drain_many --n 1000 [--control]   # one workload

The table is made by running each workload twice under
``strace -f -c -o FILE`` (Linux, strace installed): once closing the
accepted ends, once (``--control``) doing everything else the same but
leaving them open (the process ends with ``os._exit``, which makes no
per-descriptor call).  The difference of the two counts, divided by N, is
what one close costs; setup (socket, connect, accept, the peers' sends) and
the interpreter's own start cancel out.

Each workload: N loopback pairs; every peer sends ``--body`` bytes and then
its FIN (``shutdown(SHUT_WR)``), and the closing side waits (poll for
POLLRDHUP) until all of it has arrived; then the accepted ends are closed by
the case's API and policy.  The peers are never read, so nothing they do
shows in the counts.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable

import pysock

from . import ROOT

CASES: dict[str, Callable[[list[socket.socket]], object]] = {
    "drain_many": lambda socks: pysock.close_many(socks, pysock.Drain(timeout=5)),
    "drain_many_fd": lambda socks: pysock.close_many(
        [s.detach() for s in socks], pysock.Drain(timeout=5)
    ),
    "drain": lambda socks: [pysock.close(s, pysock.Drain(timeout=5)) for s in socks],
    "linger": lambda socks: [pysock.close(s, pysock.Linger(5)) for s in socks],
    "graceful": lambda socks: [pysock.close(s, pysock.Graceful()) for s in socks],
    "abortive": lambda socks: [pysock.abort(s) for s in socks],
    "reaper": lambda socks: _reap(socks, pysock.Drain(timeout=5)),
}
# drain_many_fd's detach() makes no system call: it closes int handles.


def _reap(socks: list[socket.socket], policy: pysock.Policy) -> list[pysock.CloseResult]:
    """Reaper.submit of every socket, then every result.  The counts include
    making and closing one Reaper (its thread, wake socket, engine, and the
    thread's waits): a few dozen calls per run, a few hundredths per close
    at N=1000."""
    with pysock.Reaper(max_in_flight=len(socks)) as reaper:
        futures = [reaper.submit(s, policy) for s in socks]
        return [f.result(10) for f in futures]


def pairs(n: int, body: int) -> tuple[list[socket.socket], list[socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=n)
    peers, servers = [], []
    payload = b"x" * body
    for _ in range(n):
        c = socket.create_connection(listener.getsockname())
        s, _ = listener.accept()
        if payload:
            c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        peers.append(c)
        servers.append(s)
    listener.close()
    # Wait until every body and FIN has arrived (loopback delivers them
    # within the send, but say so rather than assume it).
    poller = select.poll()
    for s in servers:
        poller.register(s, select.POLLRDHUP)
    left = {s.fileno() for s in servers}
    while left:
        for fd, _ in poller.poll(5000):
            left.discard(fd)
            poller.unregister(fd)
    return peers, servers


def run(case: str, n: int, body: int, control: bool) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n + 64), hard))
    _peers, servers = pairs(n, body)  # kept open until os._exit
    if not control:
        results = CASES[case](servers)
        assert isinstance(results, list)  # abort/close return lists here
    sys.stdout.flush()
    os._exit(0)  # no per-descriptor cleanup: the kernel closes the rest


_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def counts(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            m = _LINE.match(line)
            if m and m.group(3) != "total":
                out[m.group(3)] = int(m.group(1))
    return out


def traced(case: str, n: int, body: int, control: bool) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "strace.txt")
        cmd = ["strace", "-f", "-c", "-o", out, sys.executable, "-m", "bench.syscalls"]
        cmd += ["--run", case, "--n", str(n), "--body", str(body)]
        cmd += ["--control"] if control else []
        subprocess.run(cmd, check=True, timeout=300, cwd=ROOT)
        return counts(out)


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.syscalls", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--body", type=int, default=1000, help="bytes each peer sends before FIN")
    ap.add_argument("--case", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--run", choices=CASES, help="run one workload (under strace)")
    ap.add_argument("--control", action="store_true", help="with --run: skip the close")
    a = ap.parse_args()
    if a.run:
        run(a.run, a.n, a.body, a.control)
        return
    if shutil.which("strace") is None:
        sys.exit("strace not found (apt-get install strace)")
    print(f"system calls per close, N={a.n}, body={a.body} bytes + FIN from each peer")
    for case in a.case.split(","):
        base = traced(case, a.n, a.body, True)
        full = traced(case, a.n, a.body, False)
        per = {k: (full.get(k, 0) - base.get(k, 0)) / a.n for k in set(full) | set(base)}
        shown = {k: v for k, v in per.items() if abs(v) >= 0.005}
        total = sum(shown.values())
        detail = ", ".join(f"{k} {v:.2f}" for k, v in sorted(shown.items(), key=lambda kv: -kv[1]))
        print(f"{case:14} {total:6.2f}  {detail}")


if __name__ == "__main__":
    main()
