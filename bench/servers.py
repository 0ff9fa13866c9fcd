"""uvicorn and gunicorn gthread, each with pysock's integration vs without,
side by side in one run: keep-alive small-request throughput, and the
early-413 path (responses received whole per second, server CPU per
response).

    python -m bench.servers [--quick] [--rounds N] [--seconds S] [--conns C]
                            [--body BYTES] [--only keepalive,close,413]
                            [--servers h11,httptools,gthread] [--json]

(from the checkout root: it imports ``tests.integrations.harness``).

Servers, started by their users' command lines on free 127.0.0.1 ports (one
worker each), serving ``tests/integrations/apps.py``:

- ``uvicorn apps:asgi_app --http h11`` vs ``--http
  pysock.integrations.uvicorn:H11Protocol``; the same with ``httptools`` vs
  ``:HttpToolsProtocol`` (full run only);
- ``gunicorn -k gthread --threads 4 apps:wsgi_app`` vs ``-k
  pysock.integrations.gunicorn.ThreadWorker``.

Modes, each from a separate load process with ``C`` client threads:

- ``keepalive``: each thread on its own keep-alive connection, one small GET
  after another (the close path is never taken: what is measured is that the
  request path is the server's own); requests per second, ratio pysock / own
  (target: >= 0.97);
- ``close`` (not run unless ``--only`` names it): every small GET says
  ``Connection: close`` and the thread opens a new connection for the next
  one, so every request ends in the close pysock replaces (e.g. gunicorn's
  ``close_graceful`` on the worker's poller thread vs a hand-over to the
  reaper); requests per second;
- ``413``: each thread uploads ``POST /close`` with a ``--body``-byte
  Content-Length body and ``Connection: close`` on a new connection, sending
  and reading at once as curl does; the app answers 413 + 256 KiB without
  reading the body.  Counted: responses received whole (status line and all
  Content-Length bytes) per second, all responses per second, and server CPU
  per response (and per whole response).  The own close (uvicorn's ``transport.close()``, gunicorn's
  ``close_graceful``: read at most 64 KiB or 2 s, then close) truncates:
  that is the control.

Server CPU is utime + stime from ``/proc/PID/stat`` of the server process and
its children (gunicorn's worker), read before and after each measurement.
Each round measures every server for ``S`` seconds per mode in an order that
alternates between rounds; a ratio is the median of the per-round ratios,
shown with their min-max.  Bounded in time (default about 4 minutes,
``--quick`` under 1 minute); every server and load process is stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from tests.integrations.harness import ServerProcess, free_port, start_server

from . import ROOT

#: the integration tests' apps (``apps:asgi_app``, ``apps:wsgi_app``)
APPS = str(ROOT / "tests" / "integrations")

MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("keepalive", "close", "413")
DEFAULT_MODES = ("keepalive", "413")
#: a port -> the server's command line
Launch = Callable[[int], list[str]]


def _uvicorn(http: str) -> Launch:
    def argv(port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "apps:asgi_app", "--app-dir", APPS,
            "--host", "127.0.0.1", "--port", str(port), "--http", http,
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip

    return argv


def _gunicorn(worker: str) -> Launch:
    def argv(port: int) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "-k", worker, "-w", "1", "--threads", "4",
            "--keep-alive", "30", "--log-level", "warning", "-b", f"127.0.0.1:{port}",
            "--chdir", APPS, "apps:wsgi_app",
        ]  # fmt: skip

    return argv


#: name -> (own, pysock) command lines
PAIRS: dict[str, tuple[Launch, Launch]] = {
    "uvicorn h11": (_uvicorn("h11"), _uvicorn("pysock.integrations.uvicorn:H11Protocol")),
    "uvicorn httptools": (
        _uvicorn("httptools"),
        _uvicorn("pysock.integrations.uvicorn:HttpToolsProtocol"),
    ),
    "gunicorn gthread": (
        _gunicorn("gthread"),
        _gunicorn("pysock.integrations.gunicorn.ThreadWorker"),
    ),
}
QUICK_PAIRS = ("uvicorn h11", "gunicorn gthread")


# -- server CPU ---------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def server_cpu(pid: int) -> float:
    """utime + stime (s) of ``pid`` and its children, from /proc/PID/stat."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / CLK_TCK


# -- the small-request load: keepalive, close (in its own process) -----------


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
    load_args = ["--load", str(port), mode, str(seconds), str(conns)]
    out = subprocess.run(
        [sys.executable, "-m", "bench.servers", *load_args],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        cwd=ROOT,
    )
    return int(out.stdout.strip()) / seconds


# -- the early-413 load (in its own process) ---------------------------------


def _upload(port: int, body: int, chunk: memoryview, timeout: float) -> bool:
    """One POST /close with a ``body``-byte upload, sent while reading; True
    when the status line and every Content-Length byte arrived."""
    head = (
        b"POST /close HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % body
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sel = selectors.DefaultSelector()
    try:
        sock.setblocking(False)
        pending = memoryview(head)
        left = body
        buf = bytearray()
        expected = -1
        got = 0
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        sending = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _key, events in sel.select(deadline - time.monotonic()):
                if events & selectors.EVENT_WRITE and sending:
                    if not pending:
                        pending = chunk[: min(len(chunk), left)]
                        left -= len(pending)
                    try:
                        pending = pending[sock.send(pending) :]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:  # reset / broken pipe: keep reading what is left
                        sending = False
                    if sending and not pending and not left:
                        sending = False
                    if not sending:
                        sel.modify(sock, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    try:
                        data = sock.recv(262144)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return False
                    if not data:
                        return False
                    if expected < 0:
                        buf += data
                        end = buf.find(b"\r\n\r\n")
                        if end < 0:
                            continue
                        lines = bytes(buf[:end]).lower().split(b"\r\n")
                        expected = next(
                            (int(x[15:]) for x in lines if x.startswith(b"content-length:")), 0
                        )
                        got = len(buf) - end - 4
                        buf.clear()
                    else:
                        got += len(data)
                    if got >= expected:
                        return got == expected
        return False
    finally:
        sel.close()
        sock.close()


def load_413(port: int, seconds: float, conns: int, body: int) -> tuple[int, int]:
    until = time.monotonic() + seconds
    whole = [0] * conns
    total = [0] * conns
    chunk = memoryview(b"u" * 65536)

    def client(i: int) -> None:
        while time.monotonic() < until:
            try:
                ok = _upload(port, body, chunk, timeout=15.0)
            except OSError:
                ok = False
            total[i] += 1
            whole[i] += ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return sum(whole), sum(total)


def run_413(port: int, seconds: float, conns: int, body: int) -> tuple[int, int]:
    load_args = ["--load-413", str(port), str(seconds), str(conns), str(body)]
    out = subprocess.run(
        [sys.executable, "-m", "bench.servers", *load_args],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        cwd=ROOT,
    )
    whole, total = out.stdout.split()
    return int(whole), int(total)


# -- the comparison ------------------------------------------------------------


def measure(server: ServerProcess, mode: str, args: argparse.Namespace) -> dict[str, float]:
    cpu0 = server_cpu(server.pid)
    if mode in ("keepalive", "close"):
        rps = run_load(server.port, mode, args.seconds, args.conns)
        whole = total = rps * args.seconds
    else:
        w, t = run_413(server.port, args.seconds, args.conns, args.body)
        whole, total = float(w), float(t)
    cpu = server_cpu(server.pid) - cpu0
    if server.proc.poll() is not None:
        raise RuntimeError(f"server {server.pid} died:\n{server.output()}")
    return {
        "whole_per_s": whole / args.seconds,
        "total_per_s": total / args.seconds,
        "whole_fraction": whole / total if total else 0.0,
        "cpu_ms_per_response": 1000 * cpu / total if total else float("nan"),
        "cpu_ms_per_whole": 1000 * cpu / whole if whole else float("inf"),
    }


def _summary(own: list[float], pysock: list[float]) -> dict[str, float]:
    ratios = [p / o if o else float("inf") for p, o in zip(pysock, own, strict=True)]
    return {
        "own": statistics.median(own),
        "pysock": statistics.median(pysock),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.servers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="uvicorn h11 + gunicorn, 3 x 1.5 s")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--body", type=int, default=4 * MiB, help="upload size, bytes")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_MODES),
        help=f"modes, comma-separated: {','.join(MODES)} (default: {','.join(DEFAULT_MODES)})",
    )
    parser.add_argument(
        "--servers",
        default=None,
        help="a subset: h11,httptools,gthread (default: all; quick: h11,gthread)",
    )
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--load-413", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        port, mode, seconds, conns = args.load
        print(load(int(port), mode, float(seconds), int(conns)))
        return
    if args.load_413:
        port, seconds, conns, body = args.load_413
        print(*load_413(int(port), float(seconds), int(conns), int(body)))
        return
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.seconds = args.seconds or (1.5 if args.quick else 2.5)
    modes = [m for m in args.only.split(",") if m]
    if set(modes) - set(MODES):
        parser.error(f"--only: modes are {', '.join(MODES)}")
    if args.servers:
        wanted = set(args.servers.split(","))
        pairs = [p for p in PAIRS if p.split()[1] in wanted]
        if len(pairs) != len(wanted):
            parser.error("--servers: names are h11, httptools, gthread")
    else:
        pairs = [p for p in PAIRS if not args.quick or p in QUICK_PAIRS]
    runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    servers: dict[tuple[str, str], ServerProcess] = {}
    started = time.monotonic()
    load_before = os.getloadavg()
    try:
        for pair in pairs:
            for side, launch in zip(("own", "pysock"), PAIRS[pair], strict=True):
                port = free_port()
                servers[pair, side] = start_server(launch(port), port, cwd=str(ROOT))
        for r in range(args.rounds):
            sides = ("own", "pysock") if r % 2 == 0 else ("pysock", "own")
            for mode in modes:
                for pair in pairs:
                    for side in sides:
                        m = measure(servers[pair, side], mode, args)
                        runs.setdefault((pair, mode, side), []).append(m)
    finally:
        for server in servers.values():
            server.stop()
    figures: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for pair in pairs:
        for mode in modes:
            own, pys = runs[pair, mode, "own"], runs[pair, mode, "pysock"]
            figures.setdefault(pair, {})[mode] = {
                k: _summary([o[k] for o in own], [p[k] for p in pys]) for k in own[0]
            }
    import gunicorn
    import uvicorn

    setup = {
        "uvicorn": uvicorn.__version__,
        "gunicorn": gunicorn.__version__,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "conns": args.conns,
        "body": args.body,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": time.monotonic() - started,
    }
    if args.json:
        print(json.dumps({"setup": setup, "figures": figures}, indent=2))
        return
    print(
        f"uvicorn {setup['uvicorn']}, gunicorn {setup['gunicorn']} (gthread, 4 threads); "
        f"{args.conns} client threads; {args.rounds} rounds x {args.seconds:g} s per server "
        f"and mode; 413 upload {args.body:,} bytes; load average "
        f"{load_before[0]:.2f} -> {setup['loadavg_after'][0]:.2f}; {setup['wall_s']:.0f} s"
    )
    print("own / pysock medians; ratio = median of per-round pysock/own (min-max)")
    for pair, by_mode in figures.items():
        for mode, f in by_mode.items():
            small = mode in ("keepalive", "close")  # every response is whole
            keys = ["total_per_s", "cpu_ms_per_response"] if small else list(f)
            for k in keys:
                s = f[k]
                label = "req/s" if k == "total_per_s" and small else k
                print(
                    f"{pair:<18} {mode:<9} {label:<20} {s['own']:>9.3f} {s['pysock']:>9.3f} "
                    f"{s['ratio']:>7.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f})"
                )


if __name__ == "__main__":
    main()
