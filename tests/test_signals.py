"""Signals during a blocking close (PEP 475): handlers run at once, the wait
resumes toward the same deadline, and a raising handler leaves the socket
object owning its handle."""

from __future__ import annotations

import _thread
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support import (
    WINE_NO_TCP_INFO,
    KiB,
    assert_blocking,
    assert_pair_intact,
    fd_is_open,
    fill_send_buffer,
    open_fds,
    recv_all,
    wine_xfail,
)

import pysock
from pysock import Drain, Linger

# Wine: no SIO_TCP_INFO, so Linger is the kernel's (SO_LINGER, then one
# closesocket call): no slice of the wait returns to Python for a handler.
WINE_LINGER_FALLBACK = WINE_NO_TCP_INFO + "; the wait is one closesocket(), no handler runs in it"


class Alarm(Exception):
    """Raised by a signal handler."""


@pytest.fixture
def alarm() -> Iterator[Callable[..., None]]:
    """alarm(handler, delay, interval=0): a signal after delay seconds (then
    every interval seconds), handled by handler in the main thread;
    alarm.stop() stops it, as teardown does, which restores the old handler.

    POSIX: SIGALRM from setitimer, which interrupts the wait in the kernel.
    Windows has neither: SIGINT is simulated by _thread.interrupt_main()
    from a timer thread, and its handler runs when the wait's slice returns
    to Python."""
    assert threading.current_thread() is threading.main_thread()
    if hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM"):
        old = signal.getsignal(signal.SIGALRM)

        def arm(handler, delay: float, interval: float = 0.0) -> None:
            signal.signal(signal.SIGALRM, handler)
            signal.setitimer(signal.ITIMER_REAL, delay, interval)

        arm.stop = lambda: signal.setitimer(signal.ITIMER_REAL, 0)  # type: ignore[attr-defined]
        yield arm
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        return
    old = signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    timers: list[threading.Thread] = []

    def fire(delay: float, interval: float) -> None:
        wait = delay
        while not stop.wait(wait):
            _thread.interrupt_main(signal.SIGINT)
            if interval <= 0:
                return
            wait = interval

    def arm_thread(handler, delay: float, interval: float = 0.0) -> None:
        signal.signal(signal.SIGINT, handler)
        timer = threading.Thread(target=fire, args=(delay, interval), daemon=True)
        timers.append(timer)
        timer.start()

    def stop_thread() -> None:
        # After the join, an interrupt the timer already sent is pending and
        # runs its handler at the caller's next bytecode, inside the test,
        # never later in pytest's own code.
        stop.set()
        for timer in timers:
            timer.join(5)

    arm_thread.stop = stop_thread  # type: ignore[attr-defined]
    yield arm_thread
    stop.set()
    for timer in timers:
        timer.join(5)
    signal.signal(signal.SIGINT, old)


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
    alarm.stop()

    assert result.reason == "timeout"
    assert 0.8 <= wall <= 2.5
    assert len(fired) >= 5  # handlers ran while the close waited
    assert fired[0] - t0 < 0.5


@wine_xfail(WINE_LINGER_FALLBACK)
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


@pytest.mark.parametrize(
    "policy",
    [Drain(3.0, idle=None), pytest.param(Linger(3.0), marks=wine_xfail(WINE_LINGER_FALLBACK))],
    ids=["Drain", "Linger"],
)
def test_raising_handler_propagates_and_socket_keeps_its_handle(make_pair, alarm, policy):
    before = open_fds()
    server, client = make_pair(client_rcvbuf=4 * KiB)
    if isinstance(policy, Linger):
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
        fill_send_buffer(server)  # Linger has to wait
    fd = server.fileno()

    def boom(signum, frame):
        raise Alarm

    t0 = time.monotonic()
    alarm(boom, 0.2)
    try:
        with pytest.raises(Alarm):
            pysock.close(server, policy)
    finally:
        # Under Wine, Linger's kernel-linger fallback can return before the
        # alarm: then its Alarm must still land here (the expected failure),
        # not in pytest's report of it.
        alarm.stop()
    wall = time.monotonic() - t0

    assert wall < 1.0  # promptly, not at the 3 s deadline
    assert server.fileno() == fd  # still owned: nothing freed half-way
    assert fd_is_open(fd)
    assert_blocking(server, client)  # in the mode it was in (Windows: handle too)

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
    before = open_fds()
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
            assert fd_is_open(s.fileno())
    assert servers[1].fileno() != -1
    assert servers[2].fileno() != -1
    for s, client in pairs[1:]:
        assert_blocking(s, client)  # in the mode it was in (Windows: handle too)
    results = pysock.close_many([s for s in servers if s.fileno() != -1], pysock.Abortive())
    assert all(r.how == "abortive" for r in results)
    assert all(s.fileno() == -1 for s in servers)
    for _, client in pairs:
        client.close()
    del pairs
    if before is not None:
        assert open_fds() == before
