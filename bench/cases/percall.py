"""2. percall: CPU per close, connection setup excluded.

pysock.abort / close(Graceful()) vs the standard library's setsockopt(SO_LINGER)
+ close vs the same calls from C; plain close() for reference."""

from __future__ import annotations

import ctypes
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pysock

from ..common import (
    LINGER_ABORT,
    LINGER_OFF,
    LOCAL,
    CFloor,
    Config,
    Progress,
    close_all,
    cpu,
    median,
    ratios,
    rotated,
    target,
)

__all__ = [
    "COLUMNS",
    "CONTENDERS",
    "TITLE",
    "BatchSample",
    "Thunk",
    "batch",
    "make_pairs",
    "preparers",
    "run",
]

TITLE = "2. Per-call cost: CPU per close, connection setup excluded"
COLUMNS = ("contender", "cpu_us_per_call", "wall_us_per_call", "calls")

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


CONTENDERS = (
    "pysock.abort",
    "stdlib abort",
    "C abort",
    "pysock Graceful",
    "stdlib graceful",
    "C graceful",
    "stdlib plain close",
)


def preparers(floor: CFloor | None) -> dict[str, Callable[[list[socket.socket]], Thunk]]:
    prep: dict[str, Callable[[list[socket.socket]], Thunk]] = {
        "pysock.abort": _py_abort,
        "stdlib abort": lambda s: _std(s, LINGER_ABORT),
        "pysock Graceful": _py_graceful,
        "stdlib graceful": lambda s: _std(s, LINGER_OFF),
        "stdlib plain close": _std_plain,
    }
    if floor is not None:
        prep["C abort"] = lambda s: _c_batch(floor, s, True)
        prep["C graceful"] = lambda s: _c_batch(floor, s, False)
    return {n: prep[n] for n in CONTENDERS if n in prep}


@dataclass
class BatchSample:
    contender: str
    n: int
    cpu: float
    wall: float

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.n * 1e6


def batch(contender: str, prepare: Callable[[list[socket.socket]], Thunk], n: int) -> BatchSample:
    """Connect ``n`` pairs (untimed), time only the ``n`` closes."""
    servers, clients = make_pairs(n)
    try:
        closes = prepare(servers)
        c0, w0 = cpu(), time.perf_counter()
        closes()
        used, wall = cpu() - c0, time.perf_counter() - w0
    finally:
        close_all(servers)
        close_all(clients)
    return BatchSample(contender, n, used, wall)


def run(cfg: Config, floor: CFloor | None, say: Progress) -> dict[str, Any]:
    prep = preparers(floor)
    names = list(prep)
    samples: dict[str, list[BatchSample]] = {n: [] for n in names}
    for r in range(cfg.percall_rounds):
        for name in rotated(names, r):
            samples[name].append(batch(name, prep[name], cfg.percall_batch))
        if r == 0 or (r + 1) % max(1, cfg.percall_rounds // 4) == 0:
            say(
                f"percall round {r + 1}/{cfg.percall_rounds}: "
                + ", ".join(f"{n} {samples[n][-1].cpu_us:.2f}" for n in names)
                + " CPU us/call"
            )
    rows = [
        {
            "contender": n,
            "cpu_us_per_call": median([s.cpu_us for s in samples[n]]),
            "wall_us_per_call": median([s.wall / s.n * 1e6 for s in samples[n]]),
            "calls": sum(s.n for s in samples[n]),
        }
        for n in names
    ]
    used = {n: [s.cpu for s in samples[n]] for n in names}
    nan = float("nan")

    def ratio(a: str, b: str) -> float:
        return ratios(used[a], used[b]) if a in used and b in used else nan

    found = {
        "pysock.abort / stdlib abort": ratio("pysock.abort", "stdlib abort"),
        "pysock Graceful / stdlib graceful": ratio("pysock Graceful", "stdlib graceful"),
        "pysock.abort / C abort": ratio("pysock.abort", "C abort"),
        "pysock Graceful / C graceful": ratio("pysock Graceful", "C graceful"),
    }
    limits = [1.15, 1.15, 1.5, 1.5]
    targets = [
        target("percall", name, value, limit, "<=")
        for (name, value), limit in zip(found.items(), limits, strict=True)
    ]
    return {
        "rows": rows,
        "ratios": found,
        "targets": targets,
        "samples": [asdict(s) for n in names for s in samples[n]],
    }
