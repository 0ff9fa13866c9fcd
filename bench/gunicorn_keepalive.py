"""gunicorn gthread: small-request throughput with pysock's ThreadWorker vs
gunicorn's own gthread worker, side by side in one run.

    python bench/gunicorn_keepalive.py [--quick] [--rounds N] [--seconds S]
                                       [--conns C] [--threads T] [--json]

Two gunicorn servers (one worker each, ``--threads T``) serve
``tests/integrations/apps.py:wsgi_app`` (GET: a 3-byte 200): ``-k gthread``
and ``-k pysock.integrations.gunicorn.ThreadWorker``.  A load process runs
``C`` client threads, each on its own connection, one request at a time:

- ``keepalive``: every connection sends request after request (the close
  path is never taken; what is measured is that the worker's request path
  is gunicorn's own);
- ``close``: every request says ``Connection: close`` and the client opens a
  new connection for the next one (every request ends in the close that
  pysock replaces: gunicorn's ``close_graceful`` on the worker's poller
  thread vs a hand-over to the reaper).

Each round measures both servers for ``S`` seconds per mode, in an order
that alternates between rounds; a ratio is the median of the per-round
ratios (pysock / gunicorn; above 1 is faster with pysock).  Loopback only;
bounded in time; both servers and the load process are stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(ROOT, "tests", "integrations")
WORKERS = {
    "gunicorn": "gthread",
    "pysock": "pysock.integrations.gunicorn.ThreadWorker",
}
MODES = ("keepalive", "close")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_accepting(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not accept on {port} within {timeout} s")


def start_gunicorn(worker: str, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        worker,
        "-w",
        "1",
        "--threads",
        str(threads),
        "--worker-connections",
        "1000",
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        APPS,
        "apps:wsgi_app",
    ]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        _wait_accepting(port, proc)
    except BaseException:
        stop(proc)
        raise
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


# -- the load (in its own process) -------------------------------------------


def _one_response(sock: socket.socket, buf: bytearray) -> bool:
    """Read one response (Content-Length body); False at EOF."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            total = end + 4 + length
            while len(buf) < total:
                data = sock.recv(65536)
                if not data:
                    return False
                buf += data
            del buf[:total]
            return True
        data = sock.recv(65536)
        if not data:
            return False
        buf += data


def _client(port: int, mode: str, until: float, counts: list[int], i: int) -> None:
    keepalive = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    closing = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    done = 0
    sock: socket.socket | None = None
    buf = bytearray()
    try:
        while time.monotonic() < until:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf.clear()
            sock.sendall(keepalive if mode == "keepalive" else closing)
            ok = _one_response(sock, buf)
            if ok:
                done += 1
            if mode == "close" or not ok:
                sock.close()
                sock = None
    finally:
        if sock is not None:
            sock.close()
        counts[i] = done


def load(port: int, mode: str, seconds: float, conns: int) -> int:
    until = time.monotonic() + seconds
    counts = [0] * conns
    threads = [
        threading.Thread(target=_client, args=(port, mode, until, counts, i)) for i in range(conns)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return sum(counts)


def run_load(port: int, mode: str, seconds: float, conns: int) -> float:
    """Requests per second, from a separate load process."""
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), mode, str(seconds), str(conns)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return int(out.stdout.strip()) / seconds


# -- the comparison ------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        port, mode, seconds, conns = args.load
        print(load(int(port), mode, float(seconds), int(conns)))
        return
    rounds = args.rounds or (3 if args.quick else 7)
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    servers = {}
    try:
        for name, worker in WORKERS.items():
            servers[name] = start_gunicorn(worker, args.threads)
        rates: dict[str, dict[str, list[float]]] = {m: {n: [] for n in WORKERS} for m in MODES}
        for r in range(rounds):
            order = list(WORKERS) if r % 2 == 0 else list(reversed(WORKERS))
            for mode in MODES:
                for name in order:
                    rates[mode][name].append(run_load(servers[name][1], mode, seconds, args.conns))
        for name, (proc, _port) in servers.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} server died during the run")
    finally:
        for proc, _port in servers.values():
            stop(proc)
    figures = {}
    for mode in MODES:
        ratios = [
            p / g for p, g in zip(rates[mode]["pysock"], rates[mode]["gunicorn"], strict=True)
        ]
        figures[mode] = {
            "gunicorn_rps": statistics.median(rates[mode]["gunicorn"]),
            "pysock_rps": statistics.median(rates[mode]["pysock"]),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    import gunicorn

    setup = {
        "gunicorn": gunicorn.__version__,
        "rounds": rounds,
        "seconds": seconds,
        "conns": args.conns,
        "threads": args.threads,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps({"setup": setup, "figures": figures}, indent=2))
        return
    print(
        f"gunicorn {setup['gunicorn']} gthread, 1 worker x {args.threads} threads; "
        f"{args.conns} client connections; {rounds} rounds x {seconds:g} s per server and mode"
    )
    print(f"{'mode':<10} {'gunicorn req/s':>15} {'pysock req/s':>13} {'ratio (min-max)':>22}")
    for mode, f in figures.items():
        print(
            f"{mode:<10} {f['gunicorn_rps']:>15,.0f} {f['pysock_rps']:>13,.0f} "
            f"{f['ratio_median']:>8.3f} ({f['ratio_min']:.3f}-{f['ratio_max']:.3f})"
        )


if __name__ == "__main__":
    main()
