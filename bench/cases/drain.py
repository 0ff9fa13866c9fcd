"""1. drain: receiver CPU per GiB discarded, from a sender in another process.

pysock.drain vs the best pure-Python loop (blocking recv_into 256 KiB), asyncio
sock_recv_into and the C floor (blocking recv(MSG_TRUNC) until 0)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pysock

from ..common import (
    LOCAL,
    TIMEVAL_30S,
    BenchError,
    CFloor,
    Config,
    GiB,
    KiB,
    MiB,
    Progress,
    Worker,
    cpu,
    median,
    ratios,
    rotated,
    serve,
    target,
)

__all__ = [
    "COLUMNS",
    "CONTENDERS",
    "TITLE",
    "DrainSample",
    "drain_fns",
    "run",
    "sender_worker",
    "transfer",
]

TITLE = "1. Drain: receiver CPU seconds per GiB discarded (sender in another process)"
COLUMNS = (
    "contender",
    "cpu_s_per_gib",
    "cpu_s_per_gib_min",
    "gib_per_s",
    "sender_cpu_s_per_gib",
    "recv_calls_per_mib",
    "waits_per_mib",
)

SEND_CHUNK = 4 * MiB
PY_BUFFER = 256 * KiB


def _sender_handle(message: tuple[Any, ...]) -> tuple[Any, ...]:
    _, port, nbytes = message
    chunk = memoryview(bytes(SEND_CHUNK))
    c0, w0 = cpu(), time.perf_counter()
    with socket.create_connection((LOCAL, port), timeout=30) as s:
        s.settimeout(None)  # blocking: no poll before each send
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, TIMEVAL_30S)
        left = nbytes
        while left > 0:
            piece = chunk[: min(left, SEND_CHUNK)]
            s.sendall(piece)
            left -= len(piece)
    return ("sent", nbytes, cpu() - c0, time.perf_counter() - w0)


def _sender_main(conn: Connection) -> None:
    serve(conn, _sender_handle)


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


CONTENDERS = (
    "pysock.drain",
    "python recv_into 256K",
    "asyncio sock_recv_into",
    "C recv(MSG_TRUNC)",
)


def drain_fns(floor: CFloor | None) -> dict[str, DrainFn]:
    fns: dict[str, DrainFn] = {
        "pysock.drain": _drain_pysock,
        "python recv_into 256K": _drain_recv_into,
        "asyncio sock_recv_into": _drain_asyncio,
    }
    if floor is not None:
        fns["C recv(MSG_TRUNC)"] = lambda s: floor.drain(s.fileno())
    return fns


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


def transfer(sender: Worker, contender: str, fn: DrainFn, nbytes: int) -> DrainSample:
    """One transfer of ``nbytes`` from the sender process, discarded by ``fn``;
    CPU of this (receiving) process from accept to EOF."""
    with socket.create_server((LOCAL, 0)) as listener:
        listener.settimeout(30)
        sender.send(("send", listener.getsockname()[1], nbytes))
        sock, _ = listener.accept()
    with sock:
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL_30S)
        c0, w0 = cpu(), time.perf_counter()
        got, calls = fn(sock)
        used, wall = cpu() - c0, time.perf_counter() - w0
    _, sent, sender_cpu, _ = sender.recv(60)
    if got != sent:
        raise BenchError(f"{contender}: discarded {got} bytes of {sent}")
    return DrainSample(contender, got, used, wall, calls, sender_cpu)


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


def run(cfg: Config, floor: CFloor | None, say: Progress) -> dict[str, Any]:
    fns = drain_fns(floor)
    names = list(fns)
    samples: dict[str, list[DrainSample]] = {n: [] for n in names}
    with sender_worker() as sender:
        for r in range(cfg.drain_rounds):
            for name in rotated(names, r):
                s = transfer(sender, name, fns[name], cfg.drain_bytes)
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
                return transfer(sender, name, fns[name], count_bytes)

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
                "cpu_s_per_gib": median([s.cpu_per_gib for s in ss]),
                "cpu_s_per_gib_min": min(s.cpu_per_gib for s in ss),
                "gib_per_s": median([s.nbytes / s.wall / GiB for s in ss]),
                "sender_cpu_s_per_gib": median([s.sender_cpu * GiB / s.nbytes for s in ss]),
                "recv_calls_per_mib": recv_per_mib,
                "waits_per_mib": waits,
                "bytes_total": sum(s.nbytes for s in ss),
            }
        )
    used = {n: [s.cpu for s in samples[n]] for n in names}
    found = {
        "pysock / python recv_into": ratios(used["pysock.drain"], used["python recv_into 256K"]),
        "pysock / asyncio": ratios(used["pysock.drain"], used["asyncio sock_recv_into"]),
    }
    targets = [
        target(
            "drain", "pysock CPU / best pure-Python loop", found["pysock / python recv_into"], 0.5
        )
    ]
    if floor is not None:
        found["pysock / C floor"] = ratios(used["pysock.drain"], used["C recv(MSG_TRUNC)"])
    value = found.get("pysock / C floor", float("nan"))
    targets.append(target("drain", "pysock CPU / C floor", value, 1.05, "<="))
    return {
        "rows": rows,
        "ratios": found,
        "targets": targets,
        "syscalls": syscalls,
        "samples": [asdict(s) for n in names for s in samples[n]],
    }
