"""What every benchmark case shares: the run's configuration, worker
processes, the median-of-ratios helpers, CPU clocks, descriptor limits and
the C floors (bench/c/drain_floor.c, compiled with the system cc and loaded
with ctypes)."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO

from . import HERE

if sys.platform != "win32":
    import resource

__all__ = [
    "C_FLOOR_SOURCE",
    "FULL",
    "LINGER_ABORT",
    "LINGER_OFF",
    "LOCAL",
    "QUICK",
    "TIMEVAL_30S",
    "BenchError",
    "CFloor",
    "Config",
    "GiB",
    "KiB",
    "MiB",
    "Progress",
    "Worker",
    "abort_linger",
    "close_all",
    "cpu",
    "load_c_floor",
    "median",
    "raise_nofile",
    "ratios",
    "rotated",
    "serve",
    "sys_cpu",
    "target",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
LOCAL = "127.0.0.1"

C_FLOOR_SOURCE = HERE / "c" / "drain_floor.c"


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
    reaper_n: int  # connections per reaper/close_many run
    reaper_reps: int  # runs per contender
    loop_lag_n: int  # connections in flight per bench/loop_lag.py run
    loop_lag_runs: int  # runs per path and loop


QUICK = Config("quick", 64 * MiB, 4, 500, 8, (1000, 2000), 1, 8, 1.0, 2, 4 * MiB, 2000, 2, 1000, 1)
FULL = Config(
    "full", 128 * MiB, 8, 500, 40, (1000, 10000), 5, 16, 2.5, 3, 8 * MiB, 10000, 5, 10000, 5
)

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
    goal = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft == resource.RLIM_INFINITY or soft >= goal:
        return int(soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (goal, hard))
    return int(goal)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratios(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of the per-round ratios (pairs taken in the same round)."""
    return median([a / b for a, b in zip(num, den, strict=False) if b > 0])


def rotated(items: Sequence[str], k: int) -> list[str]:
    """``items`` rotated by ``k``: the contenders' order in round ``k``."""
    k %= len(items)
    return [*items[k:], *items[:k]]


LINGER_ABORT = struct.pack("ii", 1, 0)
LINGER_OFF = struct.pack("ii", 0, 0)
TIMEVAL_30S = struct.pack("ll", 30, 0)


def abort_linger(sock: socket.socket) -> None:
    """SO_LINGER {1,0}: the next close sends RST."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)


def close_all(socks: Sequence[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


def target(
    section: str, name: str, value: float, limit: float = 0.0, op: str = "<="
) -> dict[str, Any]:
    """A ratio judged against the issue's target (reported, never asserted)."""
    return {"section": section, "name": name, "value": value, "limit": limit, "op": op}


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


def cpu() -> float:
    """CPU seconds of this process (all its threads) so far."""
    return time.process_time()


def sys_cpu() -> float:
    """Kernel CPU seconds of this process so far (0.0 where unknown)."""
    if sys.platform == "win32":
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


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


def serve(conn: Connection, handle: Callable[[tuple[Any, ...]], tuple[Any, ...]]) -> None:
    """A worker's main loop: answer each command with ``handle``'s reply."""
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


# --------------------------------------------------------------------------
# the C floors

_RESULT_NAMES = ("eof", "timeout", "reset", "error")  # df_linger_many's codes 0..3


class CFloor:
    """bench/c/drain_floor.c, compiled with the system cc and loaded with ctypes
    (which releases the GIL around each call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.df_drain.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_longlong)]
        lib.df_drain.restype = ctypes.c_longlong
        lib.df_close_batch.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]
        lib.df_close_batch.restype = ctypes.c_int
        lib.df_linger_many.argtypes = [
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.df_linger_many.restype = ctypes.c_int
        self.lib = lib

    def drain(self, fd: int, length: int = MiB) -> tuple[int, int]:
        calls = ctypes.c_longlong(0)
        got = int(self.lib.df_drain(fd, length, ctypes.byref(calls)))
        if got < 0:
            raise OSError(-got, os.strerror(-got))
        return got, int(calls.value)

    def close_batch(self, fds: Any, n: int, abortive: bool) -> int:
        return int(self.lib.df_close_batch(fds, n, int(abortive)))

    def linger_many(self, fds: Sequence[int], timeout: float) -> dict[str, int]:
        """The minimal lingering close of every descriptor, one deadline
        (Linux: shutdown, one epoll registration, recv(MSG_TRUNC) to EOF,
        close).  Takes the descriptors over: each is closed on return."""
        n = len(fds)
        arr = (ctypes.c_int * n)(*fds)
        out = (ctypes.c_int * n)()
        rc = int(self.lib.df_linger_many(arr, n, int(timeout * 1000), out))
        if rc < 0:
            raise OSError(-rc, f"df_linger_many: {os.strerror(-rc)}")
        counts: dict[str, int] = {}
        for code in out:
            name = _RESULT_NAMES[code] if 0 <= code < len(_RESULT_NAMES) else f"code{code}"
            counts[name] = counts.get(name, 0) + 1
        return counts

    @property
    def has_linger_many(self) -> bool:
        """df_linger_many is built (Linux: it needs epoll and MSG_TRUNC)."""
        return bool(self.lib.df_linger_many(None, 0, 0, None) == 0)


def load_c_floor(tmpdir: str) -> CFloor | str:
    """The compiled C floor, or why it is not available."""
    if sys.platform == "win32":
        return "not built on Windows"
    if not C_FLOOR_SOURCE.is_file():
        return f"{C_FLOOR_SOURCE} not found"
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
