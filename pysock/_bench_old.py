"""``python -m pysock bench``: pysock against what a Python user can write today,
and against plain C, over loopback (127.0.0.1 only).

Four comparisons; each runs its contenders side by side in one process run,
alternating their order round by round, and reports ratios (medians of the
per-round ratios), because shared machines are noisy:

1. drain      receiver CPU per GiB discarded, from a sender in another process
2. percall    CPU per close: pysock.abort / close(Graceful()) vs the standard
              library's setsockopt(SO_LINGER) + close vs the same calls from C
3. many       N connections whose peers (another process) send a little and
              close within 0-500 ms, closed with Drain(timeout=2): close_many vs
              a thread pool vs asyncio; wall and CPU of the closing side
4. server     an HTTP/1.1-style server that answers at once without reading the
              request body (an early 413): truncated responses and requests per
              second with plain close vs pysock Drain

The C floors (bench/c/drain_floor.c) are compiled at bench time with the
system cc and loaded with ctypes; without a source checkout or a compiler
they are skipped, and said so.  Every wait is bounded in bytes and time, and
every process and socket started here is cleaned up.  Nothing here asserts a
speed: timing is reported, never judged pass/fail.

The same case functions drive ``pytest bench/ --benchmark-only``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO

import pysock

if sys.platform != "win32":
    import resource

__all__ = [
    "DRAIN_CONTENDERS",
    "FULL",
    "MANY_CONTENDERS",
    "PERCALL_CONTENDERS",
    "QUICK",
    "SERVER_CLOSERS",
    "BenchError",
    "CFloor",
    "Config",
    "Worker",
    "client_worker",
    "close_all",
    "drain_fns",
    "drain_transfer",
    "load_c_floor",
    "main",
    "make_pairs",
    "many_close",
    "many_connect",
    "many_run",
    "peer_worker",
    "percall_batch",
    "percall_preparers",
    "raise_nofile",
    "sender_worker",
    "server_run",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
LOCAL = "127.0.0.1"

REPO = Path(__file__).resolve().parent.parent
C_FLOOR_SOURCE = REPO / "bench" / "c" / "drain_floor.c"


class BenchError(RuntimeError):
    """A benchmark could not run (limits, a worker that died, a short transfer)."""


@dataclass(frozen=True)
class Config:
    name: str
    drain_bytes: int  # per transfer
    drain_rounds: int  # transfers per contender
    percall_batch: int  # connected pairs per timed batch
    percall_rounds: int  # batches per contender
    many_sizes: tuple[int, ...]
    many_reps: int
    server_clients: int
    server_seconds: float  # per run
    server_rounds: int  # runs per closer
    server_body: int  # request body the server never reads


QUICK = Config("quick", 64 * MiB, 4, 500, 8, (1000, 2000), 1, 8, 1.0, 2, 4 * MiB)
FULL = Config("full", 128 * MiB, 8, 500, 40, (1000, 10000), 5, 16, 2.5, 3, 8 * MiB)

SECTIONS = ("drain", "percall", "many", "server")

# --------------------------------------------------------------------------
# small helpers


def raise_nofile(need: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (the
    benchmark's job, never the library's); fail clearly below ``need``."""
    if sys.platform == "win32":
        return need
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise BenchError(
            f"this benchmark needs {need} open descriptors per process, but the hard "
            f"RLIMIT_NOFILE is {hard} (see `ulimit -Hn`); raise it (e.g. `ulimit -Hn "
            f"{need}` as root, or LimitNOFILE= / limits.conf) and run again"
        )
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return int(soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return int(target)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratios(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of the per-round ratios (pairs taken in the same round)."""
    return _median([a / b for a, b in zip(num, den, strict=False) if b > 0])


def _rotated(items: Sequence[str], k: int) -> list[str]:
    k %= len(items)
    return [*items[k:], *items[:k]]


def _abort_linger(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)


def close_all(socks: Sequence[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


_LINGER_ABORT = struct.pack("ii", 1, 0)
_LINGER_OFF = struct.pack("ii", 0, 0)
_TIMEVAL_30S = struct.pack("ll", 30, 0)


class Progress:
    """Progress lines on stderr, stamped with the seconds since the start."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self.start
            print(f"[{elapsed:6.1f}s] {message}", file=self.stream, flush=True)


# --------------------------------------------------------------------------
# worker processes (spawned, command-driven, bounded waits)


class Worker:
    """A child process serving commands over a pipe; ``None`` stops it."""

    def __init__(self, target: Callable[[Connection], None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def send(self, message: tuple[Any, ...]) -> None:
        self.conn.send(message)

    def recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise BenchError(f"worker {self.proc.pid} did not answer within {timeout:.0f} s")
        try:
            reply = self.conn.recv()
        except EOFError:
            raise BenchError(f"worker {self.proc.pid} died") from None
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise BenchError(f"worker {self.proc.pid} failed: {reply[1]}")
        return reply

    def call(self, message: tuple[Any, ...], timeout: float) -> Any:
        self.send(message)
        return self.recv(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        if self.proc.is_alive():  # pragma: no cover
            self.proc.kill()
            self.proc.join(2)
        self.conn.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(conn: Connection, handle: Callable[[tuple[Any, ...]], tuple[Any, ...]]) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns ^C and cleans up
    raise_nofile(0)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        try:
            reply = handle(message)
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(reply)


def _cpu() -> float:
    return time.process_time()


def _sys_cpu() -> float:
    """Kernel CPU seconds of this process so far (0.0 where unknown)."""
    if sys.platform == "win32":
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


# --------------------------------------------------------------------------
# the C floors


class CFloor:
    """bench/c/drain_floor.c, compiled with the system cc and loaded with ctypes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.df_drain.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_longlong)]
        lib.df_drain.restype = ctypes.c_longlong
        lib.df_close_batch.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]
        lib.df_close_batch.restype = ctypes.c_int
        self.lib = lib

    def drain(self, fd: int, length: int = MiB) -> tuple[int, int]:
        calls = ctypes.c_longlong(0)
        got = int(self.lib.df_drain(fd, length, ctypes.byref(calls)))
        if got < 0:
            raise OSError(-got, os.strerror(-got))
        return got, int(calls.value)

    def close_batch(self, fds: Any, n: int, abortive: bool) -> int:
        return int(self.lib.df_close_batch(fds, n, int(abortive)))


def load_c_floor(tmpdir: str) -> CFloor | str:
    """The compiled C floor, or why it is not available."""
    if sys.platform == "win32":
        return "not built on Windows"
    if not C_FLOOR_SOURCE.is_file():
        return f"{C_FLOOR_SOURCE} not found (run from a source checkout)"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler (cc) on PATH"
    out = Path(tmpdir) / "drain_floor.so"
    cmd = [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(C_FLOOR_SOURCE)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        return CFloor(out)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(cmd)} failed: {exc}"


# --------------------------------------------------------------------------
# 1. drain: receiver CPU per GiB

SEND_CHUNK = 4 * MiB
PY_BUFFER = 256 * KiB


def _sender_handle(message: tuple[Any, ...]) -> tuple[Any, ...]:
    _, port, nbytes = message
    chunk = memoryview(bytes(SEND_CHUNK))
    c0, w0 = _cpu(), time.perf_counter()
    with socket.create_connection((LOCAL, port), timeout=30) as s:
        s.settimeout(None)  # blocking: no poll before each send
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL_30S)
        left = nbytes
        while left > 0:
            piece = chunk[: min(left, SEND_CHUNK)]
            s.sendall(piece)
            left -= len(piece)
    return ("sent", nbytes, _cpu() - c0, time.perf_counter() - w0)


def _sender_main(conn: Connection) -> None:
    _serve(conn, _sender_handle)


def sender_worker() -> Worker:
    """A process that connects to a port and sends N bytes as fast as it can."""
    return Worker(_sender_main)


DrainFn = Callable[[socket.socket], tuple[int, int]]  # -> (bytes, recv calls or -1)


def _drain_pysock(sock: socket.socket) -> tuple[int, int]:
    res = pysock.drain(sock, timeout=60.0)
    if not res.eof:
        raise BenchError(f"pysock.drain ended with {res.reason} after {res.drained} bytes")
    return res.drained, -1


def _drain_recv_into(sock: socket.socket) -> tuple[int, int]:
    view = memoryview(bytearray(PY_BUFFER))
    recv_into = sock.recv_into
    total = calls = 0
    while True:
        n = recv_into(view)
        calls += 1
        if not n:
            return total, calls
        total += n


async def _aio_drain(sock: socket.socket) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    buf = bytearray(PY_BUFFER)
    total = calls = 0
    while True:
        n = await loop.sock_recv_into(sock, buf)
        calls += 1
        if not n:
            return total, calls
        total += n


def _drain_asyncio(sock: socket.socket) -> tuple[int, int]:
    sock.setblocking(False)
    return asyncio.run(_aio_drain(sock))


def drain_fns(floor: CFloor | None) -> dict[str, DrainFn]:
    fns: dict[str, DrainFn] = {
        "pysock.drain": _drain_pysock,
        "python recv_into 256K": _drain_recv_into,
        "asyncio sock_recv_into": _drain_asyncio,
    }
    if floor is not None:
        fns["C recv(MSG_TRUNC)"] = lambda s: floor.drain(s.fileno())
    return fns


DRAIN_CONTENDERS = (
    "pysock.drain",
    "python recv_into 256K",
    "asyncio sock_recv_into",
    "C recv(MSG_TRUNC)",
)


@dataclass
class DrainSample:
    contender: str
    nbytes: int
    cpu: float  # receiving process
    wall: float
    calls: int  # recv calls, -1 if not counted
    sender_cpu: float

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu * GiB / self.nbytes


def drain_transfer(sender: Worker, contender: str, fn: DrainFn, nbytes: int) -> DrainSample:
    """One transfer of ``nbytes`` from the sender process, discarded by ``fn``;
    CPU of this (receiving) process from accept to EOF."""
    with socket.create_server((LOCAL, 0)) as listener:
        listener.settimeout(30)
        sender.send(("send", listener.getsockname()[1], nbytes))
        sock, _ = listener.accept()
    with sock:
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL_30S)
        c0, w0 = _cpu(), time.perf_counter()
        got, calls = fn(sock)
        cpu, wall = _cpu() - c0, time.perf_counter() - w0
    _, sent, sender_cpu, _ = sender.recv(60)
    if got != sent:
        raise BenchError(f"{contender}: discarded {got} bytes of {sent}")
    return DrainSample(contender, got, cpu, wall, calls, sender_cpu)


_SYSCALL_EVENTS = ("recvfrom", "poll", "ppoll", "epoll_wait", "epoll_pwait")


def _count_syscalls(run: Callable[[], object]) -> dict[str, int] | None:
    """System calls of this process while ``run`` runs, with ``perf stat`` on
    the syscall tracepoints; None where perf or the tracepoints are missing."""
    perf = shutil.which("perf")
    if perf is None or sys.platform != "linux":
        return None
    events = ",".join(f"syscalls:sys_enter_{e}" for e in _SYSCALL_EVENTS)
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
        cmd = [perf, "stat", "-x", ",", "-o", out.name, "-e", events, "-p", str(os.getpid())]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.4)  # let perf attach
            if proc.poll() is not None:
                return None
            run()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2)
        counts: dict[str, int] = {}
        for line in Path(out.name).read_text().splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
                with contextlib.suppress(ValueError):
                    counts[parts[2].removeprefix("syscalls:sys_enter_")] = int(parts[0])
        return counts or None


def run_drain(cfg: Config, floor: CFloor | None, say: Progress) -> dict[str, Any]:
    fns = drain_fns(floor)
    names = list(fns)
    samples: dict[str, list[DrainSample]] = {n: [] for n in names}
    with sender_worker() as sender:
        for r in range(cfg.drain_rounds):
            for name in _rotated(names, r):
                s = drain_transfer(sender, name, fns[name], cfg.drain_bytes)
                samples[name].append(s)
            say(
                f"drain round {r + 1}/{cfg.drain_rounds}: "
                + ", ".join(f"{n} {samples[n][-1].cpu_per_gib:.3f}" for n in names)
                + " CPU s/GiB"
            )
        syscalls: dict[str, dict[str, int] | None] = {}
        count_bytes = min(cfg.drain_bytes, 64 * MiB)
        for name in names:

            def once(name: str = name) -> DrainSample:
                return drain_transfer(sender, name, fns[name], count_bytes)

            syscalls[name] = _count_syscalls(once)
        say("drain: system calls counted" if any(syscalls.values()) else "drain: perf not usable")
    rows = []
    for name in names:
        ss = samples[name]
        sc = syscalls.get(name)
        recv_per_mib = sc.get("recvfrom", 0) * MiB / count_bytes if sc else None
        waits = sum(v for k, v in sc.items() if k != "recvfrom") * MiB / count_bytes if sc else None
        rows.append(
            {
                "contender": name,
                "cpu_s_per_gib": _median([s.cpu_per_gib for s in ss]),
                "cpu_s_per_gib_min": min(s.cpu_per_gib for s in ss),
                "gib_per_s": _median([s.nbytes / s.wall / GiB for s in ss]),
                "sender_cpu_s_per_gib": _median([s.sender_cpu * GiB / s.nbytes for s in ss]),
                "recv_calls_per_mib": recv_per_mib,
                "waits_per_mib": waits,
                "bytes_total": sum(s.nbytes for s in ss),
            }
        )
    cpu = {n: [s.cpu for s in samples[n]] for n in names}
    ratios = {
        "pysock / python recv_into": _ratios(cpu["pysock.drain"], cpu["python recv_into 256K"]),
        "pysock / asyncio": _ratios(cpu["pysock.drain"], cpu["asyncio sock_recv_into"]),
    }
    targets = [
        _target(
            "drain", "pysock CPU / best pure-Python loop", ratios["pysock / python recv_into"], 0.5
        )
    ]
    if floor is not None:
        ratios["pysock / C floor"] = _ratios(cpu["pysock.drain"], cpu["C recv(MSG_TRUNC)"])
        targets.append(
            _target("drain", "pysock CPU / C floor", ratios["pysock / C floor"], 1.2, "<=")
        )
    else:
        targets.append(_target("drain", "pysock CPU / C floor", float("nan"), 1.2, "<="))
    return {
        "rows": rows,
        "ratios": ratios,
        "targets": targets,
        "syscalls": syscalls,
        "samples": [asdict(s) for n in names for s in samples[n]],
    }


# --------------------------------------------------------------------------
# 2. per-call cost

_GRACEFUL = pysock.Graceful()


def make_pairs(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """``n`` connected loopback pairs: (accepted ends, connecting ends)."""
    servers: list[socket.socket] = []
    clients: list[socket.socket] = []
    try:
        with socket.create_server((LOCAL, 0), backlog=min(n, 1024)) as listener:
            listener.settimeout(10)
            addr = listener.getsockname()
            for _ in range(n):
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                clients.append(c)
                c.connect(addr)
                s, _ = listener.accept()
                s.settimeout(None)
                servers.append(s)
    except BaseException:
        close_all(servers)
        close_all(clients)
        raise
    return servers, clients


Thunk = Callable[[], object]


def _py_abort(socks: list[socket.socket]) -> Thunk:
    def run() -> None:
        abort = pysock.abort
        for s in socks:
            abort(s)

    return run


def _py_graceful(socks: list[socket.socket]) -> Thunk:
    def run() -> None:
        close, graceful = pysock.close, _GRACEFUL
        for s in socks:
            close(s, graceful)

    return run


def _std(socks: list[socket.socket], option: bytes) -> Thunk:
    def run() -> None:
        sol, linger = socket.SOL_SOCKET, socket.SO_LINGER
        for s in socks:
            s.setsockopt(sol, linger, option)
            s.close()

    return run


def _std_plain(socks: list[socket.socket]) -> Thunk:
    def run() -> None:
        for s in socks:
            s.close()

    return run


def _c_batch(floor: CFloor, socks: list[socket.socket], abortive: bool) -> Thunk:
    fds = (ctypes.c_int * len(socks))(*[s.detach() for s in socks])  # untimed
    return lambda: floor.close_batch(fds, len(socks), abortive)


PERCALL_CONTENDERS = (
    "pysock.abort",
    "stdlib abort",
    "C abort",
    "pysock Graceful",
    "stdlib graceful",
    "C graceful",
    "stdlib plain close",
)


def percall_preparers(floor: CFloor | None) -> dict[str, Callable[[list[socket.socket]], Thunk]]:
    prep: dict[str, Callable[[list[socket.socket]], Thunk]] = {
        "pysock.abort": _py_abort,
        "stdlib abort": lambda s: _std(s, _LINGER_ABORT),
        "pysock Graceful": _py_graceful,
        "stdlib graceful": lambda s: _std(s, _LINGER_OFF),
        "stdlib plain close": _std_plain,
    }
    if floor is not None:
        prep["C abort"] = lambda s: _c_batch(floor, s, True)
        prep["C graceful"] = lambda s: _c_batch(floor, s, False)
    return {n: prep[n] for n in PERCALL_CONTENDERS if n in prep}


@dataclass
class BatchSample:
    contender: str
    n: int
    cpu: float
    wall: float

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.n * 1e6


def percall_batch(
    contender: str, prepare: Callable[[list[socket.socket]], Thunk], n: int
) -> BatchSample:
    """Connect ``n`` pairs (untimed), time only the ``n`` closes."""
    servers, clients = make_pairs(n)
    try:
        run = prepare(servers)
        c0, w0 = _cpu(), time.perf_counter()
        run()
        cpu, wall = _cpu() - c0, time.perf_counter() - w0
    finally:
        close_all(servers)
        close_all(clients)
    return BatchSample(contender, n, cpu, wall)


def run_percall(cfg: Config, floor: CFloor | None, say: Progress) -> dict[str, Any]:
    prep = percall_preparers(floor)
    names = list(prep)
    samples: dict[str, list[BatchSample]] = {n: [] for n in names}
    for r in range(cfg.percall_rounds):
        for name in _rotated(names, r):
            samples[name].append(percall_batch(name, prep[name], cfg.percall_batch))
        if r == 0 or (r + 1) % max(1, cfg.percall_rounds // 4) == 0:
            say(
                f"percall round {r + 1}/{cfg.percall_rounds}: "
                + ", ".join(f"{n} {samples[n][-1].cpu_us:.2f}" for n in names)
                + " CPU us/call"
            )
    rows = [
        {
            "contender": n,
            "cpu_us_per_call": _median([s.cpu_us for s in samples[n]]),
            "wall_us_per_call": _median([s.wall / s.n * 1e6 for s in samples[n]]),
            "calls": sum(s.n for s in samples[n]),
        }
        for n in names
    ]
    cpu = {n: [s.cpu for s in samples[n]] for n in names}
    nan = float("nan")
    ratios = {
        "pysock.abort / stdlib abort": _ratios(cpu["pysock.abort"], cpu["stdlib abort"]),
        "pysock Graceful / stdlib graceful": _ratios(
            cpu["pysock Graceful"], cpu["stdlib graceful"]
        ),
        "pysock.abort / C abort": _ratios(cpu["pysock.abort"], cpu["C abort"])
        if "C abort" in cpu
        else nan,
        "pysock Graceful / C graceful": _ratios(cpu["pysock Graceful"], cpu["C graceful"])
        if "C graceful" in cpu
        else nan,
    }
    limits = [1.1, 1.1, 1.5, 1.5]
    targets = [
        _target("percall", name, value, limit, "<=")
        for (name, value), limit in zip(ratios.items(), limits, strict=True)
    ]
    return {
        "rows": rows,
        "ratios": ratios,
        "targets": targets,
        "samples": [asdict(s) for n in names for s in samples[n]],
    }


# --------------------------------------------------------------------------
# 3. many connections

PEER_SPREAD = 0.5  # peers close at random within 0..500 ms
PEER_HELLO = b"h" * 256  # sent right after connecting
PEER_BYE = b"b" * 256  # sent just before the peer closes
MANY_TIMEOUT = 2.0  # Drain(timeout=2)
POOL_THREADS = 64


def _peer_handle_factory() -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    socks: list[socket.socket] = []

    def handle(message: tuple[Any, ...]) -> tuple[Any, ...]:
        if message[0] == "connect":
            _, port, n = message
            raise_nofile(n + 64)
            close_all(socks)
            socks.clear()
            for _ in range(n):
                s = socket.create_connection((LOCAL, port), timeout=30)
                socks.append(s)
                s.sendall(PEER_HELLO)
            return ("ready", n)
        if message[0] == "go":
            _, t_start, seed, spread = message
            rng = random.Random(seed)
            order = sorted((rng.uniform(0, spread), i) for i in range(len(socks)))
            latest, errors = 0.0, 0
            for delay, i in order:
                wait = t_start + delay - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                s = socks[i]
                try:
                    s.send(PEER_BYE)
                except OSError:
                    errors += 1
                s.close()
                latest = max(latest, time.monotonic() - t_start)
            socks.clear()
            return ("done", latest, errors)
        raise ValueError(f"unknown command {message[0]!r}")

    return handle


def _peer_main(conn: Connection) -> None:
    _serve(conn, _peer_handle_factory())


def peer_worker() -> Worker:
    """A process holding the peer ends: connects N, closes them at random times."""
    return Worker(_peer_main)


def _close_many_pysock(socks: list[socket.socket], timeout: float) -> Counter[str]:
    results = pysock.close_many(socks, pysock.Drain(timeout=timeout, idle=None))
    return Counter(r.reason for r in results)


_tls = threading.local()


def _py_lingering_close(sock: socket.socket, deadline: float) -> str:
    """The best pure-Python lingering close: shutdown(SHUT_WR), read until
    b"" or the deadline, close (abortively at the deadline)."""
    buf = getattr(_tls, "buf", None)
    if buf is None:
        buf = _tls.buf = bytearray(64 * KiB)
    try:
        sock.shutdown(socket.SHUT_WR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _abort_linger(sock)
                return "timeout"
            sock.settimeout(left)
            if not sock.recv_into(buf):
                return "eof"
    except TimeoutError:
        _abort_linger(sock)
        return "timeout"
    except OSError:
        return "error"
    finally:
        sock.close()


def _close_many_threads(socks: list[socket.socket], timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(POOL_THREADS) as pool:
        return Counter(pool.map(_py_lingering_close, socks, [deadline] * len(socks)))


async def _aio_read_to_eof(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    while await loop.sock_recv(sock, 64 * KiB):
        pass


async def _aio_lingering_close(sock: socket.socket, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    try:
        sock.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(_aio_read_to_eof(loop, sock), timeout)
        return "eof"
    except asyncio.TimeoutError:
        _abort_linger(sock)
        return "timeout"
    except OSError:
        return "error"
    finally:
        sock.close()


async def _aioclose_all(socks: list[socket.socket], timeout: float) -> list[str]:
    return list(await asyncio.gather(*(_aio_lingering_close(s, timeout) for s in socks)))


def _close_many_asyncio(socks: list[socket.socket], timeout: float) -> Counter[str]:
    return Counter(asyncio.run(_aioclose_all(socks, timeout)))


MANY_CONTENDERS: dict[str, Callable[[list[socket.socket], float], Counter[str]]] = {
    "pysock.close_many": _close_many_pysock,
    f"threads x{POOL_THREADS}": _close_many_threads,
    "asyncio tasks": _close_many_asyncio,
}


@dataclass
class ManySample:
    contender: str
    n: int
    wall: float
    cpu: float
    slowest_peer: float
    outcomes: dict[str, int]
    sys_cpu: float
    peer_errors: int


def many_connect(peers: Worker, n: int) -> list[socket.socket]:
    """``n`` connections from the peer process (each peer has sent a little),
    accepted here and made non-blocking (asyncio needs it; the others do not
    mind).  Untimed setup."""
    raise_nofile(n + 64)
    socks: list[socket.socket] = []
    try:
        with socket.create_server((LOCAL, 0), backlog=min(n, 4096)) as listener:
            listener.settimeout(30)
            peers.send(("connect", listener.getsockname()[1], n))
            for _ in range(n):
                s, _ = listener.accept()
                socks.append(s)
        peers.recv(60)
        for s in socks:
            s.setblocking(False)
    except BaseException:
        close_all(socks)
        raise
    return socks


def many_close(peers: Worker, contender: str, socks: list[socket.socket], seed: int) -> ManySample:
    """Tell the peers to close within 0-500 ms and close every socket with
    ``contender`` (Drain(timeout=2) semantics); wall and CPU of this side."""
    closer = MANY_CONTENDERS[contender]
    n = len(socks)
    try:
        t_start = time.monotonic()
        peers.send(("go", t_start, seed, PEER_SPREAD))
        c0, k0 = _cpu(), _sys_cpu()
        outcomes = closer(socks, MANY_TIMEOUT)
        cpu, wall, kernel = _cpu() - c0, time.monotonic() - t_start, _sys_cpu() - k0
        _, slowest, peer_errors = peers.recv(30 + n / 1000)
    finally:
        close_all(socks)
    return ManySample(contender, n, wall, cpu, slowest, dict(outcomes), kernel, peer_errors)


def many_run(peers: Worker, contender: str, n: int, seed: int) -> ManySample:
    """One many-connection run: connect ``n`` (untimed), then close them."""
    return many_close(peers, contender, many_connect(peers, n), seed)


def run_many(cfg: Config, say: Progress) -> dict[str, Any]:
    names = list(MANY_CONTENDERS)
    raise_nofile(max(cfg.many_sizes) + 64)
    samples: dict[tuple[str, int], list[ManySample]] = {}
    k = 0
    with peer_worker() as peers:
        for n in cfg.many_sizes:
            for rep in range(cfg.many_reps):
                for name in _rotated(names, k):
                    s = many_run(peers, name, n, seed=1000 * n + rep)
                    samples.setdefault((name, n), []).append(s)
                    say(
                        f"many n={n} rep {rep + 1}/{cfg.many_reps} {name}: wall {s.wall:.3f} s, "
                        f"CPU {s.cpu:.3f} s, slowest peer {s.slowest_peer:.3f} s, {s.outcomes}"
                    )
                k += 1
    rows = []
    for n in cfg.many_sizes:
        for name in names:
            ss = samples[(name, n)]
            outcomes: Counter[str] = Counter()
            for s in ss:
                outcomes.update(s.outcomes)
            rows.append(
                {
                    "contender": name,
                    "n": n,
                    "wall_s": _median([s.wall for s in ss]),
                    "cpu_s": _median([s.cpu for s in ss]),
                    "cpu_us_per_conn": _median([s.cpu / n * 1e6 for s in ss]),
                    "sys_share": _median([s.sys_cpu / s.cpu for s in ss if s.cpu > 0]),
                    "slowest_peer_s": _median([s.slowest_peer for s in ss]),
                    "wall_over_slowest": _median([s.wall / s.slowest_peer for s in ss]),
                    "outcomes": dict(outcomes),
                }
            )
    big, small = max(cfg.many_sizes), min(cfg.many_sizes)

    def cpus(name: str, n: int) -> list[float]:
        return [s.cpu for s in samples[(name, n)]]

    pys = "pysock.close_many"
    ratios = {
        f"pysock wall / slowest peer (n={big})": _median(
            [s.wall / s.slowest_peer for s in samples[(pys, big)]]
        ),
        f"pysock CPU / asyncio CPU (n={big})": _ratios(cpus(pys, big), cpus("asyncio tasks", big)),
        f"pysock CPU / threads CPU (n={big})": _ratios(
            cpus(pys, big), cpus(f"threads x{POOL_THREADS}", big)
        ),
        f"pysock CPU per conn, n={big} / n={small}": _median(cpus(pys, big))
        / big
        / (_median(cpus(pys, small)) / small),
    }
    for name in names[1:]:
        ratios[f"{name} CPU per conn, n={big} / n={small}"] = (
            _median(cpus(name, big)) / big / (_median(cpus(name, small)) / small)
        )
    values = list(ratios.values())
    targets = [
        _target("many", f"pysock wall / slowest peer delay (n={big})", values[0], 1.3, "<="),
        _target("many", f"pysock CPU / asyncio CPU (n={big})", values[1], 0.25, "<="),
        _target(
            "many",
            f"pysock growth: CPU per connection n={big} vs n={small} (near linear)",
            values[3],
            1.5,
            "<=",
        ),
    ]
    return {
        "rows": rows,
        "ratios": ratios,
        "targets": targets,
        "samples": [asdict(s) for v in samples.values() for s in v],
    }


# --------------------------------------------------------------------------
# 4. server shape

# A small error page, and one larger than the client's initial receive window
# (so part of it is still in the server's send buffer when it closes).
RESPONSE_SIZES = (16 * KiB, 256 * KiB)


def http_response(body: int) -> bytes:
    return (
        b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {body}\r\nConnection: close\r\n\r\n".encode()
        + b"x" * body
    )


SERVER_DRAIN = pysock.Drain(timeout=5.0, idle=2.0)


def _close_plain(sock: socket.socket) -> None:
    sock.close()


def _close_drain(sock: socket.socket) -> None:
    pysock.close(sock, SERVER_DRAIN)


SERVER_CLOSERS: dict[str, Callable[[socket.socket], None]] = {
    "plain close": _close_plain,
    "pysock Drain": _close_drain,
}


def _client_handle(message: tuple[Any, ...]) -> tuple[Any, ...]:
    _, port, nclients, seconds, body, response_len = message
    request = (
        f"POST /upload HTTP/1.1\r\nHost: {LOCAL}\r\nContent-Length: {body}\r\n\r\n".encode()
        + b"b" * body
    )
    totals: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        mine: Counter[str] = Counter()
        buf = bytearray(64 * KiB)
        while time.monotonic() < end:
            mine["requests"] += 1
            try:
                s = socket.create_connection((LOCAL, port), timeout=10)
            except OSError:
                mine["connect_errors"] += 1
                continue
            got, reset = 0, False
            with s:
                try:
                    s.sendall(request)
                except (ConnectionResetError, BrokenPipeError):
                    reset = True
                    mine["reset_while_sending"] += 1
                except OSError:
                    mine["other_errors"] += 1
                try:
                    while True:
                        n = s.recv_into(buf)
                        if not n:
                            break
                        got += n
                except ConnectionResetError:
                    reset = True
                    mine["reset_while_reading"] += 1
                except OSError:
                    mine["other_errors"] += 1
            mine["complete" if got == response_len else "truncated"] += 1
            mine["resets"] += reset
        with lock:
            totals.update(mine)

    c0, w0 = _cpu(), time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return ("result", dict(totals), time.monotonic() - w0, _cpu() - c0)


def _client_main(conn: Connection) -> None:
    _serve(conn, _client_handle)


def client_worker() -> Worker:
    """A process running N HTTP-style clients that upload a body, then read."""
    return Worker(_client_main)


class _Server:
    """Thread per connection; reads the request head only, answers at once."""

    def __init__(self, closer: Callable[[socket.socket], None], response: bytes) -> None:
        self.closer = closer
        self.response = response
        self.listener = socket.create_server((LOCAL, 0), backlog=1024)
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.handlers: list[threading.Thread] = []
        self.errors = 0
        self.served = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self.handlers = [h for h in self.handlers if h.is_alive()]
            self.handlers.append(t)

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 64 * KiB:
                chunk = conn.recv(64 * KiB)
                if not chunk:
                    break
                head += chunk
            conn.sendall(self.response)
            self.closer(conn)
            self.served += 1
        except OSError:
            self.errors += 1
        finally:
            if conn.fileno() != -1:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
        for h in self.handlers:
            h.join(10)


@dataclass
class ServerSample:
    closer: str
    response: int  # response body bytes
    requests: int
    complete: int
    truncated: int
    resets: int
    wall: float
    server_cpu: float
    client_cpu: float
    server_errors: int
    counts: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.wall


def server_run(
    clients: Worker, closer: str, nclients: int, seconds: float, body: int, response: int
) -> ServerSample:
    """``nclients`` clients upload ``body`` bytes for ``seconds``; the server
    answers 413 (``response`` body bytes) at once, never reads the upload, and
    closes with ``closer``."""
    payload = http_response(response)
    server = _Server(SERVER_CLOSERS[closer], payload)
    try:
        c0 = _cpu()
        _, counts, wall, client_cpu = clients.call(
            ("run", server.port, nclients, seconds, body, len(payload)), seconds + 60
        )
    finally:
        server.close()
    return ServerSample(
        closer,
        response,
        counts.get("requests", 0),
        counts.get("complete", 0),
        counts.get("truncated", 0),
        counts.get("resets", 0),
        wall,
        _cpu() - c0,
        client_cpu,
        server.errors,
        counts,
    )


def run_server(cfg: Config, say: Progress) -> dict[str, Any]:
    names = list(SERVER_CLOSERS)
    samples: dict[tuple[str, int], list[ServerSample]] = {
        (n, size): [] for size in RESPONSE_SIZES for n in names
    }
    rows: list[dict[str, Any]] = []
    with client_worker() as clients:
        for r in range(cfg.server_rounds):
            for size in RESPONSE_SIZES:
                for name in _rotated(names, r):
                    s = server_run(
                        clients, name, cfg.server_clients, cfg.server_seconds, cfg.server_body, size
                    )
                    samples[(name, size)].append(s)
                    say(
                        f"server round {r + 1}/{cfg.server_rounds} {name}, "
                        f"{size // KiB} KiB response: {s.rps:.0f} req/s, "
                        f"{s.truncated}/{s.requests} truncated, {s.resets} resets"
                    )
    for (name, size), ss in samples.items():
        rows.append(
            {
                "closer": name,
                "response": f"{size // KiB} KiB",
                "requests": sum(s.requests for s in ss),
                "complete": sum(s.complete for s in ss),
                "truncated": sum(s.truncated for s in ss),
                "resets": sum(s.resets for s in ss),
                "req_per_s": _median([s.rps for s in ss]),
                "complete_per_s": _median([s.complete / s.wall for s in ss]),
                "server_cpu_us_per_req": _median(
                    [s.server_cpu / s.requests * 1e6 for s in ss if s.requests]
                ),
                "server_errors": sum(s.server_errors for s in ss),
            }
        )
    ratios: dict[str, float] = {}
    for size in RESPONSE_SIZES:
        drain, plain = samples[("pysock Drain", size)], samples[("plain close", size)]
        ratios[f"pysock Drain / plain close, req/s ({size // KiB} KiB)"] = _ratios(
            [s.rps for s in drain], [s.rps for s in plain]
        )
        ratios[f"pysock Drain / plain close, complete/s ({size // KiB} KiB)"] = _ratios(
            [s.complete / s.wall for s in drain], [s.complete / s.wall for s in plain]
        )
    truncated = sum(s.truncated for size in RESPONSE_SIZES for s in samples[("pysock Drain", size)])
    targets = [_target("server", "truncated responses with pysock Drain", float(truncated), 0.0)]
    for size in RESPONSE_SIZES:
        key = f"pysock Drain / plain close, req/s ({size // KiB} KiB)"
        targets.append(
            _target(
                "server",
                f"pysock Drain / plain close throughput, req/s ({size // KiB} KiB response)",
                ratios[key],
                0.9,
                ">=",
            )
        )
    return {
        "rows": rows,
        "ratios": ratios,
        "targets": targets,
        "samples": [asdict(s) for v in samples.values() for s in v],
    }


# --------------------------------------------------------------------------
# report


def _target(
    section: str, name: str, value: float, limit: float = 0.0, op: str = "<="
) -> dict[str, Any]:
    return {"section": section, "name": name, "value": value, "limit": limit, "op": op}


def _verdict(t: dict[str, Any]) -> str:
    v, limit = t["value"], t["limit"]
    if v != v:  # NaN
        return "not measured"
    return "met" if (v <= limit if t["op"] == "<=" else v >= limit) else "MISSED"


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, dict):
        return " ".join(f"{k}={n}" for k, n in sorted(v.items()))
    return str(v)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    body = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in [list(columns), *body]) for i in range(len(columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
        for line in [list(columns), *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_COLUMNS = {
    "drain": (
        "contender",
        "cpu_s_per_gib",
        "cpu_s_per_gib_min",
        "gib_per_s",
        "sender_cpu_s_per_gib",
        "recv_calls_per_mib",
        "waits_per_mib",
    ),
    "percall": ("contender", "cpu_us_per_call", "wall_us_per_call", "calls"),
    "many": (
        "contender",
        "n",
        "wall_s",
        "cpu_s",
        "cpu_us_per_conn",
        "sys_share",
        "slowest_peer_s",
        "wall_over_slowest",
        "outcomes",
    ),
    "server": (
        "closer",
        "response",
        "requests",
        "complete",
        "truncated",
        "resets",
        "req_per_s",
        "complete_per_s",
        "server_cpu_us_per_req",
        "server_errors",
    ),
}

_TITLES = {
    "drain": "1. Drain: receiver CPU seconds per GiB discarded (sender in another process)",
    "percall": "2. Per-call cost: CPU per close, connection setup excluded",
    "many": "3. Many connections, Drain(timeout=2), peers close within 0-500 ms",
    "server": "4. Server shape: early 413 without reading the request body",
}


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nofile = None
    if sys.platform != "win32":
        nofile = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    from pysock._core import lib

    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "os": platform.system(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pysock": pysock.__version__,
        "zero_copy_drain": bool(lib.ps_drain_zero_copy()),
        "nofile": nofile,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [
        f"pysock bench ({result['config']['name']}) on {m['nproc']} x {m['cpu']}, "
        f"{m['os']} {m['kernel']}, Python {m['python']}, {result['date']}"
    ]
    for name, section in result["sections"].items():
        out += ["", _TITLES[name], _table(section["rows"], _COLUMNS[name])]
        if name == "drain" and section.get("c_floor"):
            out.append(f"(C floor: {section['c_floor']})")
        out += [f"  ratio {k}: {_fmt(v)}" for k, v in section["ratios"].items()]
    targets = [t for s in result["sections"].values() for t in s["targets"]]
    rows = [
        {
            "target": f"[{t['section']}] {t['name']}",
            "measured": t["value"],
            "limit": f"{t['op']} {_fmt(float(t['limit']))}",
            "verdict": _verdict(t),
        }
        for t in targets
    ]
    out += ["", "Targets", _table(rows, ("target", "measured", "limit", "verdict"))]
    out.append(f"\nwhole run: {result['duration_s']:.1f} s")
    return "\n".join(out)


def run(cfg: Config, sections: Sequence[str], say: Progress) -> dict[str, Any]:
    started = time.monotonic()
    raise_nofile(2 * cfg.percall_batch + 64)
    result: dict[str, Any] = {
        "command": "python -m pysock bench" + (" --quick" if cfg.name == "quick" else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "config": asdict(cfg),
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="pysock-bench-") as tmp:
        floor = load_c_floor(tmp) if {"drain", "percall"} & set(sections) else None
        floor_note = "compiled from bench/c/drain_floor.c"
        if isinstance(floor, str):
            say(f"C floor skipped: {floor}")
            floor_note, floor = f"skipped: {floor}", None
        for name in sections:
            say(f"{name}: start")
            if name == "drain":
                section = run_drain(cfg, floor, say)
                section["c_floor"] = floor_note
            elif name == "percall":
                section = run_percall(cfg, floor, say)
            elif name == "many":
                section = run_many(cfg, say)
            else:
                section = run_server(cfg, say)
            result["sections"][name] = section
    result["targets"] = [
        {**t, "verdict": _verdict(t)} for s in result["sections"].values() for t in s["targets"]
    ]
    result["duration_s"] = time.monotonic() - started
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO | None]:
    if path is None:
        yield None
    elif path == "-":
        yield sys.stdout
    else:
        with open(path, "w", encoding="utf-8") as f:
            yield f


def main(quick: bool = False, json_path: str | None = None, only: str | None = None) -> int:
    """``python -m pysock bench [--quick] [--json [PATH]] [--only SECTIONS]``."""
    sections = list(SECTIONS)
    if only:
        sections = [s.strip() for s in only.split(",") if s.strip()]
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            print(f"unknown section(s) {unknown}; choose from {SECTIONS}", file=sys.stderr)
            return 2
    cfg = QUICK if quick else FULL
    say = Progress()
    table_stream = sys.stderr if json_path == "-" else sys.stdout
    say(f"pysock bench ({cfg.name}): {', '.join(sections)}; progress on stderr")
    try:
        result = run(cfg, sections, say)
    except BenchError as exc:
        print(f"pysock bench: {exc}", file=sys.stderr)
        return 1
    print(render(result), file=table_stream, flush=True)
    with _output(json_path) as f:
        if f is not None:
            json.dump(_jsonable(result), f, indent=2)
            f.write("\n")
    return 0
