"""The many-connection engine behind close_many: 1,000+ sockets on one
readiness set, results in input order, one wait, bad handles in big lists."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from support import WINDOWS, WINE_NO_TCP_INFO, WINE_RST_AS_EOF, reset_after_eof, wine_xfail

if sys.platform != "win32":
    import resource

import pysock

N = 1000


@pytest.fixture
def many_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """N connected pairs from one listener (2N descriptors; Windows has no
    descriptor limit to raise)."""
    if sys.platform != "win32":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = 2 * N + 200
        if soft < need:
            if hard != resource.RLIM_INFINITY and hard < need:
                pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        with socket.create_server(("127.0.0.1", 0), backlog=N) as listener:
            for _ in range(N):
                client = socket.create_connection(listener.getsockname()[:2], timeout=5)
                server, _ = listener.accept()
                pairs.append((server, client))
        yield pairs
    finally:
        for server, client in pairs:
            for s in (server, client):
                with contextlib.suppress(OSError):
                    s.close()
        if sys.platform != "win32":
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_thousand_drains_end_at_each_peers_eof_in_input_order(many_pairs):
    for i, (_, client) in enumerate(many_pairs):
        client.sendall(b"q" * (i % 251))  # each peer sends its own amount
    half = len(many_pairs) // 2
    for _, client in many_pairs[:half]:
        client.close()
    go = threading.Event()

    def close_the_rest() -> None:
        go.wait(5)
        for _, client in many_pairs[half:]:
            client.close()

    closer = threading.Thread(target=close_the_rest)
    closer.start()
    go.set()
    results = pysock.close_many([s for s, _ in many_pairs], pysock.Drain(timeout=10))
    closer.join()
    assert len(results) == N
    assert [r.reason for r in results] == ["eof"] * N
    assert [r.drained for r in results] == [i % 251 for i in range(N)]
    assert all(r.how == "graceful" and r.peer_eof for r in results)
    assert all(s.fileno() == -1 for s, _ in many_pairs)


@wine_xfail(WINE_RST_AS_EOF)
def test_thousand_silent_peers_all_end_at_one_deadline_with_reset(many_pairs):
    start = time.monotonic()
    results = pysock.close_many([s for s, _ in many_pairs], pysock.Drain(timeout=0.5, idle=None))
    wall = time.monotonic() - start
    assert {r.reason for r in results} == {"timeout"}
    assert {r.how for r in results} == {"abortive"}
    # One wait for all of them, not one per socket (that would be 500 s).
    assert 0.4 <= wall < 5.0
    for _, client in many_pairs:
        assert client.recv(16) == b""  # our FIN from shutdown(send) ...
        assert reset_after_eof(client)  # ... then the RST of the deadline


@wine_xfail(WINE_NO_TCP_INFO)
def test_thousand_lingers_all_acknowledged(many_pairs):
    for server, _ in many_pairs:
        server.sendall(b"r" * 1000)
    results = pysock.close_many([s for s, _ in many_pairs], pysock.Linger(5))
    assert {(r.how, r.reason, r.acked) for r in results} == {("graceful", "closed", True)}
    for _, client in many_pairs:
        assert len(client.recv(4096)) == 1000
        assert client.recv(16) == b""


@pytest.mark.skipif(WINDOWS, reason="a Windows pipe descriptor is no socket handle number")
def test_bad_handle_deep_in_a_big_list_closes_nothing(many_pairs):
    read_end, write_end = os.pipe()
    try:
        handles: list[socket.socket | int] = [s for s, _ in many_pairs]
        handles.insert(N // 2, read_end)
        with pytest.raises(pysock.NotASocketError):
            pysock.close_many(handles, pysock.Drain(timeout=1))
        assert all(s.fileno() != -1 for s, _ in many_pairs)
        # No peer saw EOF or anything else: nothing was shut down.
        readable, _, _ = select.select([c for _, c in many_pairs[:500]], [], [], 0)
        assert readable == []
        os.write(write_end, b"still open")
        assert os.read(read_end, 32) == b"still open"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_drain_deadline_holds_against_a_peer_that_floods(tcp_pair):
    server, client = tcp_pair
    stop = threading.Event()
    chunk = b"f" * (1 << 20)

    def flood() -> None:
        # Loopback only, bounded by time: at most 3 s of sending.
        end = time.monotonic() + 3.0
        with contextlib.suppress(OSError):
            while not stop.is_set() and time.monotonic() < end:
                client.sendall(chunk)

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        start = time.monotonic()
        result = pysock.close(server, pysock.Drain(timeout=0.3, idle=None))
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        flooder.join()
    assert result.reason == "timeout"
    assert result.how == "abortive"
    assert result.drained > 0
    # The flood never lets recv say EAGAIN; the deadline must hold anyway.
    assert 0.2 <= elapsed < 1.5


def test_peers_sending_their_last_data_with_fin_all_end_at_eof(make_pair):
    """Data and FIN arriving together while close_many waits: the wait must
    still see the FIN behind the data (a level-triggered set)."""
    pairs = [make_pair() for _ in range(50)]
    go = threading.Event()

    def peers() -> None:
        go.wait(5)
        for _, client in pairs:
            client.send(b"x" * 256)
            client.close()

    sender = threading.Thread(target=peers)
    sender.start()
    go.set()
    start = time.monotonic()
    results = pysock.close_many([s for s, _ in pairs], pysock.Drain(timeout=5, idle=None))
    wall = time.monotonic() - start
    sender.join()
    assert [r.reason for r in results] == ["eof"] * len(pairs)
    assert [r.drained for r in results] == [256] * len(pairs)
    assert wall < 3.0
