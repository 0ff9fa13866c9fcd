"""Signals during a blocking close (PEP 475): handlers run at once, the wait
resumes toward the same deadline, and a raising handler leaves the socket
object owning its handle."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support import KiB, assert_pair_intact, fill_send_buffer, open_fds, recv_all

import pysock
from pysock import Drain, Linger

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer") or not hasattr(signal, "SIGALRM"),
    reason="POSIX interval timers needed",
)

HAVE_PROC = os.path.isdir("/proc/self/fd")


class Alarm(Exception):
    """Raised by a signal handler."""


@pytest.fixture
def alarm() -> Iterator[Callable[..., None]]:
    """alarm(handler, delay, interval=0): SIGALRM via setitimer; the timer is
    cancelled and the old handler restored at teardown."""
    assert threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGALRM)

    def arm(handler, delay: float, interval: float = 0.0) -> None:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, delay, interval)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def test_handler_runs_promptly_and_drain_keeps_its_deadline(tcp_pair, alarm):
    server, client = tcp_pair
    fired: list[float] = []

    t0 = time.monotonic()
    alarm(lambda signum, frame: fired.append(time.monotonic()), 0.2)
    result = pysock.close(server, Drain(timeout=1.5, idle=None))
    wall = time.monotonic() - t0

    assert len(fired) == 1
    assert 0.15 <= fired[0] - t0 <= 1.0  # ran during the close, soon after the alarm
    assert result.reason == "timeout"
    assert result.how == "abortive"
    assert 1.2 <= wall <= 3.0  # resumed toward the same deadline
    assert server.fileno() == -1
    assert recv_all(client) == (b"", "eof")


def test_repeated_signals_neither_end_nor_extend_the_wait(tcp_pair, alarm):
    server, _client = tcp_pair
    fired: list[float] = []

    t0 = time.monotonic()
    alarm(lambda signum, frame: fired.append(time.monotonic()), 0.05, 0.05)
    result = pysock.close(server, Drain(timeout=1.0, idle=None))
    wall = time.monotonic() - t0
    signal.setitimer(signal.ITIMER_REAL, 0)

    assert result.reason == "timeout"
    assert 0.8 <= wall <= 2.5
    assert len(fired) >= 5  # handlers ran while the close waited
    assert fired[0] - t0 < 0.5


def test_handler_runs_during_linger_wait(make_pair, alarm):
    server, client = make_pair(client_rcvbuf=4 * KiB)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    fill_send_buffer(server)
    fired: list[float] = []

    t0 = time.monotonic()
    alarm(lambda signum, frame: fired.append(time.monotonic()), 0.2)
    result = pysock.close(server, Linger(1.0))
    wall = time.monotonic() - t0

    assert len(fired) == 1
    assert 0.15 <= fired[0] - t0 <= 0.9
    assert result.reason == "timeout"
    assert 0.8 <= wall <= 3.0
    _, end = recv_all(client)
    assert end == "reset"


@pytest.mark.parametrize("policy", [Drain(3.0, idle=None), Linger(3.0)], ids=["Drain", "Linger"])
def test_raising_handler_propagates_and_socket_keeps_its_handle(make_pair, alarm, policy):
    before = open_fds() if HAVE_PROC else None
    server, client = make_pair(client_rcvbuf=4 * KiB)
    if isinstance(policy, Linger):
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
        fill_send_buffer(server)  # Linger has to wait
    fd = server.fileno()

    def boom(signum, frame):
        raise Alarm

    t0 = time.monotonic()
    alarm(boom, 0.2)
    with pytest.raises(Alarm):
        pysock.close(server, policy)
    wall = time.monotonic() - t0

    assert wall < 1.0  # promptly, not at the 3 s deadline
    assert server.fileno() == fd  # still owned: nothing freed half-way
    os.fstat(fd)

    # The caller may close it again, and that works.
    result = pysock.close(server, pysock.Abortive())
    assert result.how == "abortive"
    assert server.fileno() == -1
    _, end = recv_all(client)
    assert end in ("reset", "eof")
    client.close()
    if before is not None:
        assert open_fds() == before


def test_raising_handler_then_plain_socket_close_works(tcp_pair, alarm):
    server, client = tcp_pair

    def boom(signum, frame):
        raise Alarm

    alarm(boom, 0.2)
    with pytest.raises(Alarm):
        pysock.close(server, Drain(3.0, idle=None))
    assert server.fileno() != -1
    server.close()  # the socket object still owns the handle and frees it
    assert recv_all(client)[1] in ("eof", "reset")


def test_raising_handler_during_drain_function_leaves_socket_open(tcp_pair, alarm):
    server, client = tcp_pair

    def boom(signum, frame):
        raise Alarm

    t0 = time.monotonic()
    alarm(boom, 0.2)
    with pytest.raises(Alarm):
        pysock.drain(server, 3.0)
    assert time.monotonic() - t0 < 1.0
    assert_pair_intact(server, client)  # drain() never shuts down or closes


def test_raising_handler_during_close_many_keeps_unfinished_handles(make_pair, alarm):
    before = open_fds() if HAVE_PROC else None
    pairs = [make_pair() for _ in range(3)]
    pairs[0][1].close()  # this one finishes at once (EOF)
    servers = [s for s, _ in pairs]

    def boom(signum, frame):
        raise Alarm

    t0 = time.monotonic()
    alarm(boom, 0.2)
    with pytest.raises(Alarm):
        pysock.close_many(servers, Drain(3.0, idle=None))
    assert time.monotonic() - t0 < 1.0
    # Each object either was freed (and detached) or still owns an open handle.
    for s in servers:
        if s.fileno() != -1:
            os.fstat(s.fileno())
    assert servers[1].fileno() != -1
    assert servers[2].fileno() != -1
    results = pysock.close_many([s for s in servers if s.fileno() != -1], pysock.Abortive())
    assert all(r.how == "abortive" for r in results)
    assert all(s.fileno() == -1 for s in servers)
    for _, client in pairs:
        client.close()
    del pairs
    if before is not None:
        assert open_fds() == before
