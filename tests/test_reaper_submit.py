"""pysock.Reaper: submission: what is taken over and how, what is refused
untouched, and the counts; over real loopback sockets, checked from the
peer's side."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import pytest
from support import (
    WINE_NO_TCP_INFO,
    WINE_RST_AS_EOF,
    KiB,
    assert_pair_intact,
    fd_is_open,
    payload,
    recv_all,
    wine_xfail,
)

import pysock
from pysock import Reaper
from pysock._reaper import hand_over


@wine_xfail(WINE_NO_TCP_INFO)
def test_submit_returns_at_once_and_the_result_is_what_the_peer_saw(reaper, tcp_pair):
    server, client = tcp_pair
    response = payload(256 * KiB)
    client.sendall(b"b" * (100 * KiB))  # a body the server never reads
    server.sendall(response)
    t0 = time.monotonic()
    fut = reaper.submit(server, pysock.Drain(timeout=5))
    assert time.monotonic() - t0 < 0.05
    assert server.fileno() == -1  # detached at submission
    data, end = recv_all(client)  # the reaper shut down our side: FIN after the data
    assert (data, end) == (response, "eof")
    assert not fut.done()  # still draining: the peer has not closed
    client.shutdown(socket.SHUT_WR)
    result = fut.result(5)
    assert (result.how, result.reason, result.peer_eof) == ("graceful", "eof", True)
    assert result.drained == 100 * KiB
    assert result.acked is True


def test_a_signal_handler_raising_right_after_the_hand_over_leaves_one_owner(
    reaper, tcp_pair, monkeypatch
):
    """A signal handler may raise (SIGTERM -> SystemExit) as soon as the C
    call that queued the close returns: the socket object must still let go
    of the handle, or the caller's own close and the reaper's would both
    close it.  The raise is injected at that point; the close goes on."""
    import pysock._binding as binding

    server, client = tcp_pair
    real = binding._submit_op

    def submit_then_raise(*args: object) -> int:
        real(*args)
        raise KeyboardInterrupt  # as a handler would, at the next bytecode

    monkeypatch.setattr(binding, "_submit_op", submit_then_raise)
    results: list[pysock.CloseResult | BaseException] = []
    got = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        hand_over(reaper, server, pysock.Drain(timeout=5), lambda r: (results.append(r), got.set()))
    assert server.fileno() == -1  # the reaper's alone
    server.close()  # the caller's cleanup after the exception: touches nothing now
    client.sendall(b"body the server never read")
    client.shutdown(socket.SHUT_WR)
    assert recv_all(client) == (b"", "eof")  # the reaper's FIN, no reset
    assert got.wait(5)
    assert len(results) == 1 and isinstance(results[0], pysock.CloseResult)
    assert (results[0].reason, results[0].drained) == ("eof", len(b"body the server never read"))
    assert reaper.stats().in_flight == 0


@wine_xfail(WINE_NO_TCP_INFO)
def test_linger_through_the_reaper(reaper, tcp_pair):
    server, client = tcp_pair
    response = payload(64 * KiB)
    server.sendall(response)
    fut = reaper.submit(server, pysock.Linger(5))
    assert recv_all(client) == (response, "eof")
    result = fut.result(5)
    assert (result.how, result.reason, result.acked) == ("graceful", "closed", True)


@wine_xfail(WINE_RST_AS_EOF)
def test_graceful_and_abortive_are_done_at_submission(reaper, make_pair):
    server, client = make_pair()
    fut = reaper.submit(server, pysock.Graceful())
    assert fut.done() and fut.result().how == "graceful"
    assert recv_all(client) == (b"", "eof")
    server, client = make_pair()
    fut = reaper.submit(server, pysock.Abortive())
    assert fut.done() and fut.result().how == "abortive"
    assert recv_all(client) == (b"", "reset")


def test_future_cannot_be_cancelled(reaper, tcp_pair):
    server, client = tcp_pair
    fut = reaper.submit(server, pysock.Drain(timeout=5))
    assert not fut.cancel()
    client.close()
    assert fut.result(5).reason == "eof"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX descriptor numbers (dup2)")
def test_a_dup_outlives_the_close_and_the_same_socket_comes_back(reaper, tcp_pair):
    """A socket closed after its one-shot event stays registered (disarmed)
    while a dup of it lives; the same socket back under the same number is
    watched again, and nothing of the first op leaks into the second."""
    server, client = tcp_pair
    fd = server.fileno()
    dup = os.dup(fd)
    try:
        first = reaper.submit(server, pysock.Drain(timeout=5, max_bytes=1000))
        assert client.recv(1) == b""  # the reaper's shutdown: it is waiting now
        client.sendall(b"x" * 2000)  # the event that ends it at the cap
        result = first.result(5)
        assert (result.reason, result.drained) == ("max_bytes", 1000)
        os.dup2(dup, fd)  # the same open socket, under the number just closed
        again = socket.socket(fileno=fd)
        second = reaper.submit(again, pysock.Drain(timeout=5))
        client.shutdown(socket.SHUT_WR)
        result = second.result(5)
        assert (result.how, result.reason, result.drained) == ("graceful", "eof", 1000)
    finally:
        os.close(dup)


def test_stats(reaper, make_pair):
    assert reaper.stats().in_flight == 0
    pairs = [make_pair() for _ in range(4)]
    futs = [reaper.submit(server, pysock.Drain(timeout=5)) for server, _ in pairs[:3]]
    reaper.submit(pairs[3][0], pysock.Abortive())
    stats = reaper.stats()
    assert (stats.in_flight, stats.done, stats.max_in_flight) == (3, 1, 64)
    for _, client in pairs[:3]:
        client.close()
    for fut in futs:
        fut.result(5)
    stats = reaper.stats()
    assert (stats.in_flight, stats.done, stats.failed) == (0, 4, 0)
    assert stats.by_reason == {"eof": 3, "closed": 1}
    assert stats.by_how == {"graceful": 3, "abortive": 1}


@pytest.mark.parametrize("policy", [None, "drain", 3.0, pysock.Drain])
def test_bad_policy_raises_and_takes_nothing(reaper, tcp_pair, policy):
    server, client = tcp_pair
    with pytest.raises(TypeError):
        reaper.submit(server, policy)
    assert_pair_intact(server, client)
    assert reaper.stats().in_flight == 0


def test_non_socket_objects_are_refused(reaper, tcp_pair):
    server, client = tcp_pair
    with pytest.raises(TypeError):
        reaper.submit(server.fileno(), pysock.Drain())  # type: ignore[arg-type]
    assert_pair_intact(server, client)


def test_closed_socket_raises(reaper, tcp_pair):
    server, _ = tcp_pair
    server.close()
    with pytest.raises(pysock.NotASocketError):
        reaper.submit(server, pysock.Drain())


def test_socket_submitted_twice_raises(reaper, tcp_pair):
    server, client = tcp_pair
    fut = reaper.submit(server, pysock.Drain(timeout=5))
    with pytest.raises(ValueError, match="already submitted"):
        reaper.submit(server, pysock.Drain(timeout=5))
    with pytest.raises(ValueError, match="already submitted"):
        Reaper.submit(reaper, server, pysock.Graceful())
    client.close()
    assert fut.result(5).reason == "eof"


@pytest.mark.skipif(
    sys.platform == "win32", reason="no dup2() of a pipe onto a socket handle on Windows"
)
def test_descriptor_that_is_no_longer_a_socket_is_not_closed(reaper, tcp_pair, pipe):
    server, _ = tcp_pair
    r, _ = pipe
    fd = server.fileno()
    os.dup2(r, fd)  # the object's descriptor is now a pipe
    try:
        with pytest.raises(pysock.NotASocketError):
            reaper.submit(server, pysock.Drain())
        assert fd_is_open(fd) and server.fileno() == fd
    finally:
        server.close()


@pytest.mark.parametrize("policy", [pysock.Drain(timeout=1), pysock.Linger(1)])
def test_udp_with_linger_or_drain_raises_and_stays_open(reaper, udp_socket, policy):
    with pytest.raises(ValueError):
        reaper.submit(udp_socket, policy)
    assert udp_socket.fileno() != -1
    assert fd_is_open(udp_socket.fileno())


def test_bad_max_in_flight():
    with pytest.raises(ValueError):
        Reaper(max_in_flight=0)
    with pytest.raises(TypeError):
        Reaper(max_in_flight=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Reaper(max_in_flight=True)
