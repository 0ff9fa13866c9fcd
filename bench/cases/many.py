"""3. many: N connections whose peers (another process) send a little and close
within 0-500 ms, closed with Drain(timeout=2) semantics.

pysock.close_many vs a 64-thread pool and asyncio tasks (each a pure-Python
lingering close) and the C floor (df_linger_many: shutdown, one epoll
registration, recv(MSG_TRUNC) to EOF, close; Linux only); wall and CPU of the
closing side."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import pysock

from ..common import (
    LOCAL,
    CFloor,
    Config,
    KiB,
    Progress,
    Worker,
    abort_linger,
    close_all,
    cpu,
    median,
    raise_nofile,
    ratios,
    rotated,
    serve,
    sys_cpu,
    target,
)

__all__ = [
    "COLUMNS",
    "CONTENDERS",
    "POOL_THREADS",
    "TITLE",
    "Closer",
    "ManySample",
    "close",
    "closers",
    "connect",
    "peer_worker",
    "run",
    "run_one",
]

TITLE = "3. Many connections, Drain(timeout=2), peers close within 0-500 ms"
COLUMNS = (
    "contender",
    "n",
    "wall_s",
    "cpu_s",
    "cpu_us_per_conn",
    "sys_share",
    "slowest_peer_s",
    "wall_over_slowest",
    "outcomes",
)

PEER_SPREAD = 0.5  # peers close at random within 0..500 ms
PEER_HELLO = b"h" * 256  # sent right after connecting
PEER_BYE = b"b" * 256  # sent just before the peer closes
TIMEOUT = 2.0  # Drain(timeout=2)
POOL_THREADS = 64

# --------------------------------------------------------------------------
# the peers


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
    serve(conn, _peer_handle_factory())


def peer_worker() -> Worker:
    """A process holding the peer ends: connects N, closes them at random times."""
    return Worker(_peer_main)


# --------------------------------------------------------------------------
# the contenders: each closes every socket, Drain(timeout) semantics, and
# counts the outcomes

Closer = Callable[[list[socket.socket], float], Counter[str]]


def _close_many_pysock(socks: list[socket.socket], timeout: float) -> Counter[str]:
    results = pysock.close_many(socks, pysock.Drain(timeout=timeout, idle=None))
    return Counter(r.reason for r in results)


_tls = threading.local()


def py_lingering_close(sock: socket.socket, deadline: float) -> str:
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
                abort_linger(sock)
                return "timeout"
            sock.settimeout(left)
            if not sock.recv_into(buf):
                return "eof"
    except TimeoutError:
        abort_linger(sock)
        return "timeout"
    except OSError:
        return "error"
    finally:
        sock.close()


def _close_many_threads(socks: list[socket.socket], timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(POOL_THREADS) as pool:
        return Counter(pool.map(py_lingering_close, socks, [deadline] * len(socks)))


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
        abort_linger(sock)
        return "timeout"
    except OSError:
        return "error"
    finally:
        sock.close()


async def _aioclose_all(socks: list[socket.socket], timeout: float) -> list[str]:
    return list(await asyncio.gather(*(_aio_lingering_close(s, timeout) for s in socks)))


def _close_many_asyncio(socks: list[socket.socket], timeout: float) -> Counter[str]:
    return Counter(asyncio.run(_aioclose_all(socks, timeout)))


def _c_closer(floor: CFloor) -> Closer:
    def close_c(socks: list[socket.socket], timeout: float) -> Counter[str]:
        fds = [s.detach() for s in socks]  # timed, as close_many detaches too
        return Counter(floor.linger_many(fds, timeout))

    return close_c


C_NAME = "C epoll+MSG_TRUNC"
_NO_FLOOR = "skipped (needs Linux, a source checkout and a cc)"
CONTENDERS = ("pysock.close_many", f"threads x{POOL_THREADS}", "asyncio tasks", C_NAME)


def closers(floor: CFloor | None) -> dict[str, Closer]:
    """The contenders available here (the C floor needs Linux and a cc)."""
    found: dict[str, Closer] = {
        "pysock.close_many": _close_many_pysock,
        f"threads x{POOL_THREADS}": _close_many_threads,
        "asyncio tasks": _close_many_asyncio,
    }
    if floor is not None and floor.has_linger_many:
        found[C_NAME] = _c_closer(floor)
    return found


# --------------------------------------------------------------------------
# one run


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


def connect(peers: Worker, n: int) -> list[socket.socket]:
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


def close(
    peers: Worker, contender: str, closer: Closer, socks: list[socket.socket], seed: int
) -> ManySample:
    """Tell the peers to close within 0-500 ms and close every socket with
    ``closer`` (Drain(timeout=2) semantics); wall and CPU of this side."""
    n = len(socks)
    try:
        t_start = time.monotonic()
        peers.send(("go", t_start, seed, PEER_SPREAD))
        c0, k0 = cpu(), sys_cpu()
        outcomes = closer(socks, TIMEOUT)
        used, wall, kernel = cpu() - c0, time.monotonic() - t_start, sys_cpu() - k0
        _, slowest, peer_errors = peers.recv(30 + n / 1000)
    finally:
        close_all(socks)
    return ManySample(contender, n, wall, used, slowest, dict(outcomes), kernel, peer_errors)


def run_one(peers: Worker, contender: str, closer: Closer, n: int, seed: int) -> ManySample:
    """One many-connection run: connect ``n`` (untimed), then close them."""
    return close(peers, contender, closer, connect(peers, n), seed)


def rows_of(samples: dict[tuple[str, int], list[ManySample]]) -> list[dict[str, Any]]:
    rows = []
    for (name, n), ss in samples.items():
        outcomes: Counter[str] = Counter()
        for s in ss:
            outcomes.update(s.outcomes)
        rows.append(
            {
                "contender": name,
                "n": n,
                "runs": len(ss),
                "wall_s": median([s.wall for s in ss]),
                "cpu_s": median([s.cpu for s in ss]),
                "cpu_us_per_conn": median([s.cpu / n * 1e6 for s in ss]),
                "sys_share": median([s.sys_cpu / s.cpu for s in ss if s.cpu > 0]),
                "slowest_peer_s": median([s.slowest_peer for s in ss]),
                "wall_over_slowest": median([s.wall / s.slowest_peer for s in ss]),
                "outcomes": dict(outcomes),
            }
        )
    return rows


def run(cfg: Config, floor: CFloor | None, say: Progress) -> dict[str, Any]:
    found = closers(floor)
    names = list(found)
    raise_nofile(max(cfg.many_sizes) + 64)
    samples: dict[tuple[str, int], list[ManySample]] = {
        (name, n): [] for n in cfg.many_sizes for name in names
    }
    k = 0
    with peer_worker() as peers:
        for n in cfg.many_sizes:
            for rep in range(cfg.many_reps):
                for name in rotated(names, k):
                    s = run_one(peers, name, found[name], n, seed=1000 * n + rep)
                    samples[(name, n)].append(s)
                    say(
                        f"many n={n} rep {rep + 1}/{cfg.many_reps} {name}: wall {s.wall:.3f} s, "
                        f"CPU {s.cpu:.3f} s, slowest peer {s.slowest_peer:.3f} s, {s.outcomes}"
                    )
                k += 1
    big, small = max(cfg.many_sizes), min(cfg.many_sizes)

    def cpus(name: str, n: int) -> list[float]:
        return [s.cpu for s in samples[(name, n)]]

    pys, nan = "pysock.close_many", float("nan")
    result = {
        f"pysock wall / slowest peer (n={big})": median(
            [s.wall / s.slowest_peer for s in samples[(pys, big)]]
        ),
        f"pysock CPU / asyncio CPU (n={big})": ratios(cpus(pys, big), cpus("asyncio tasks", big)),
        f"pysock CPU / threads CPU (n={big})": ratios(
            cpus(pys, big), cpus(f"threads x{POOL_THREADS}", big)
        ),
        f"pysock CPU / C CPU (n={big})": ratios(cpus(pys, big), cpus(C_NAME, big))
        if C_NAME in found
        else nan,
        f"pysock CPU per conn, n={big} / n={small}": median(cpus(pys, big))
        / big
        / (median(cpus(pys, small)) / small),
    }
    for name in names[1:]:
        result[f"{name} CPU per conn, n={big} / n={small}"] = (
            median(cpus(name, big)) / big / (median(cpus(name, small)) / small)
        )
    targets = [
        target(
            "many",
            f"pysock wall / slowest peer delay (n={big})",
            result[f"pysock wall / slowest peer (n={big})"],
            1.3,
            "<=",
        ),
        target(
            "many",
            f"pysock CPU / asyncio CPU (n={big})",
            result[f"pysock CPU / asyncio CPU (n={big})"],
            0.35,
            "<=",
        ),
        target(
            "many",
            f"pysock CPU / C minimal lingering close CPU (n={big})",
            result[f"pysock CPU / C CPU (n={big})"],
            1.3,
            "<=",
        ),
        target(
            "many",
            f"pysock growth: CPU per connection n={big} vs n={small} (near linear)",
            result[f"pysock CPU per conn, n={big} / n={small}"],
            1.5,
            "<=",
        ),
    ]
    return {
        "rows": rows_of(samples),
        "ratios": result,
        "targets": targets,
        "c_floor": "df_linger_many" if C_NAME in found else _NO_FLOOR,
        "samples": [asdict(s) for v in samples.values() for s in v],
    }
