"""Fixtures: connected loopback TCP pairs (IPv4, IPv6), pipes, raw fds,
peer threads and a Reaper, all cleaned up at teardown.

``support`` (tests/support.py) is importable because pytest puts tests/ on
sys.path (``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import contextlib
import os
import socket
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import PEER_TIMEOUT, WINDOWS, PeerThread, close_fd

from pysock import Reaper


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with (
            socket.create_server(("::1", 0), family=socket.AF_INET6) as lst,
            socket.create_connection(lst.getsockname()[:2], timeout=2),
        ):
            conn, _ = lst.accept()
            conn.close()
    except OSError:
        return False
    return True


HAS_IPV6 = _ipv6_loopback_works()


class PairFactory:
    """make_pair() -> (server, client): a connected TCP pair over loopback.

    The server end is the one the tests hand to pysock (blocking, as
    accept() returns it); the client end is the peer, with a timeout on
    every blocking call.  Sockets are held by weak reference, so a test can
    drop one and let it be collected; whatever is still open at teardown is
    closed."""

    def __init__(self) -> None:
        self._refs: list[weakref.ref[socket.socket]] = []

    def track(self, *socks: socket.socket) -> None:
        self._refs.extend(weakref.ref(s) for s in socks)

    def __call__(
        self,
        host: str = "127.0.0.1",
        *,
        client_rcvbuf: int | None = None,
    ) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, 0), family=family) as lst:
            lst.settimeout(PEER_TIMEOUT)
            client = socket.socket(family, socket.SOCK_STREAM)
            self.track(client)
            client.settimeout(PEER_TIMEOUT)
            if client_rcvbuf is not None:
                # Before connect, so the window it advertises stays small.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, client_rcvbuf)
            client.connect(lst.getsockname()[:2])
            server, _ = lst.accept()
            self.track(server)
        server.setblocking(True)
        return server, client

    def close_all(self) -> None:
        for ref in self._refs:
            sock = ref()
            if sock is not None and sock.fileno() != -1:
                # A failed test may have freed the handle behind its back.
                with contextlib.suppress(OSError):
                    sock.close()
        self._refs.clear()


class Threads:
    """start(fn, *args) -> PeerThread; all are joined at teardown."""

    def __init__(self) -> None:
        self._threads: list[PeerThread] = []

    def start(self, fn: Callable[..., Any], *args: Any) -> PeerThread:
        thread = PeerThread(fn, *args)
        self._threads.append(thread)
        thread.start()
        return thread

    def join_all(self) -> None:
        for thread in self._threads:
            thread.join(2 * PEER_TIMEOUT)


class RawFds:
    """Descriptors a test owns as plain ints (e.g. from socket.detach()).

    add() registers one; forget() says pysock closed it.  Any still
    registered at teardown (pysock failed to close it) is closed, so a
    failing test does not leak; a forgotten one is never touched, since its
    number may already belong to something else."""

    def __init__(self) -> None:
        self._fds: set[int] = set()

    def add(self, fd: int) -> int:
        self._fds.add(fd)
        return fd

    def forget(self, fd: int) -> None:
        self._fds.discard(fd)

    def close_all(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                close_fd(fd)
        self._fds.clear()


@pytest.fixture
def threads() -> Iterator[Threads]:
    t = Threads()
    yield t
    t.join_all()


@pytest.fixture
def make_pair(threads: Threads) -> Iterator[PairFactory]:
    # Depends on `threads` so that sockets are closed before peer threads
    # are joined (a thread blocked on a closed socket ends at its timeout).
    factory = PairFactory()
    yield factory
    factory.close_all()


@pytest.fixture
def tcp_pair(make_pair: PairFactory) -> tuple[socket.socket, socket.socket]:
    """(server_sock, client_sock) connected over 127.0.0.1."""
    return make_pair("127.0.0.1")


@pytest.fixture
def tcp6_pair(make_pair: PairFactory) -> tuple[socket.socket, socket.socket]:
    """(server_sock, client_sock) connected over ::1; skipped without IPv6."""
    if not HAS_IPV6:
        pytest.skip("IPv6 loopback (::1) not available")
    return make_pair("::1")


@pytest.fixture(params=["ipv4", "ipv6"])
def any_pair(request: pytest.FixtureRequest, make_pair: PairFactory) -> Any:
    """tcp_pair over 127.0.0.1 and over ::1 (skipped without IPv6)."""
    if request.param == "ipv6":
        if not HAS_IPV6:
            pytest.skip("IPv6 loopback (::1) not available")
        return make_pair("::1")
    return make_pair("127.0.0.1")


@pytest.fixture
def raw_fds() -> Iterator[RawFds]:
    fds = RawFds()
    yield fds
    fds.close_all()


class Pipe(tuple[int, int]):
    """(r, w): an os.pipe()'s two ends as the numbers pysock is given, a
    valid handle that is not a socket: the descriptors on POSIX, the pipe's
    OS handles on Windows (in the same number space as socket handles; os.pipe
    gives C runtime descriptors there).  works() says the pipe still carries
    data."""

    fds: tuple[int, int]

    def works(self) -> bool:
        r, w = self.fds
        return os.write(w, b"still a pipe") == 12 and os.read(r, 100) == b"still a pipe"


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    """A Pipe, closed at teardown."""
    r, w = os.pipe()
    if WINDOWS:
        import msvcrt

        ends = Pipe((msvcrt.get_osfhandle(r), msvcrt.get_osfhandle(w)))
    else:
        ends = Pipe((r, w))
    ends.fds = (r, w)
    yield ends
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    """A Reaper with a cap of 64, closed (timeout 0) at teardown."""
    r = Reaper(max_in_flight=64)
    yield r
    r.close(timeout=0)


@pytest.fixture
def udp_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    if sock.fileno() != -1:
        sock.close()
