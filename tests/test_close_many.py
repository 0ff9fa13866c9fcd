"""close_many: one wait for all, results in input order, all-or-nothing
handle checks."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from support import (
    WINE_NO_TCP_INFO,
    WINE_RST_AS_EOF,
    assert_pair_intact,
    fd_is_open,
    payload,
    recv_all,
    reset_after_eof,
    wine_xfail,
)

import pysock
from pysock import Abortive, CloseResult, Drain, Graceful, Linger, NotASocketError


def test_empty_list_returns_empty_list():
    assert pysock.close_many([], Drain(1.0)) == []
    assert pysock.close_many([]) == []
    assert pysock.close_many(iter(())) == []


def test_drain_waits_once_for_all_and_returns_results_in_input_order(make_pair, threads):
    # Each peer answers our FIN after its own delay; sequential closes would
    # take the sum (1.5 s), one shared wait takes the slowest (0.5 s).
    delays = [0.3, 0.1, 0.5, 0.2, 0.4]
    sizes = [1000 * (i + 1) + i for i in range(len(delays))]
    pairs = [make_pair() for _ in delays]

    def peer(client: socket.socket, size: int, delay: float) -> tuple[bytes, str]:
        client.sendall(payload(size))
        assert client.recv(1) == b""  # our FIN: the close has begun
        threading.Event().wait(delay)  # then take this long to answer
        client.shutdown(socket.SHUT_WR)
        return recv_all(client)

    peers = [
        threads.start(peer, client, size, delay)
        for (_, client), size, delay in zip(pairs, sizes, delays, strict=True)
    ]
    t0 = time.monotonic()
    results = pysock.close_many([s for s, _ in pairs], Drain(3.0))
    wall = time.monotonic() - t0

    assert len(results) == len(pairs)
    assert all(isinstance(r, CloseResult) for r in results)
    assert [r.reason for r in results] == ["eof"] * 5
    assert [r.how for r in results] == ["graceful"] * 5
    assert all(r.peer_eof for r in results)
    assert [r.drained for r in results] == sizes  # input order
    assert 0.4 <= wall < 1.2  # the slowest one, well below the sum (1.5 s)
    for r, delay in zip(results, delays, strict=True):
        assert delay - 0.05 <= r.elapsed <= wall + 0.01
    assert all(s.fileno() == -1 for s, _ in pairs)
    for p in peers:
        assert p.result() == (b"", "eof")


@wine_xfail(WINE_RST_AS_EOF)
def test_drain_deadline_is_shared_not_summed(make_pair):
    pairs = [make_pair() for _ in range(4)]
    t0 = time.monotonic()
    results = pysock.close_many([s for s, _ in pairs], Drain(0.5, idle=None))
    wall = time.monotonic() - t0

    assert [r.reason for r in results] == ["timeout"] * 4
    assert [r.how for r in results] == ["abortive"] * 4
    assert 0.3 <= wall < 1.5  # one deadline, not 4 x 0.5 s
    for _, client in pairs:
        assert recv_all(client) == (b"", "eof")
        assert reset_after_eof(client)


@wine_xfail(WINE_RST_AS_EOF)
def test_abortive_resets_every_peer(make_pair):
    pairs = [make_pair() for _ in range(4)]
    results = pysock.close_many([s for s, _ in pairs], Abortive())
    assert [r.how for r in results] == ["abortive"] * 4
    assert [r.reason for r in results] == ["closed"] * 4
    for server, client in pairs:
        assert server.fileno() == -1
        assert recv_all(client)[1] == "reset"


def test_graceful_is_the_default_and_every_peer_gets_its_data_and_eof(make_pair):
    pairs = [make_pair() for _ in range(4)]
    for i, (server, _) in enumerate(pairs):
        server.sendall(payload(5000 + i))
    results = pysock.close_many([s for s, _ in pairs])
    assert [(r.how, r.reason) for r in results] == [("graceful", "closed")] * 4
    for i, (_, client) in enumerate(pairs):
        assert recv_all(client) == (payload(5000 + i), "eof")


@wine_xfail(WINE_NO_TCP_INFO)
def test_linger_many_all_acknowledged(make_pair, threads):
    pairs = [make_pair() for _ in range(3)]
    readers = [threads.start(recv_all, client) for _, client in pairs]
    for i, (server, _) in enumerate(pairs):
        server.sendall(payload(100_000 + i))
    results = pysock.close_many([s for s, _ in pairs], Linger(3.0))
    assert [(r.how, r.reason, r.acked) for r in results] == [("graceful", "closed", True)] * 3
    for i, reader in enumerate(readers):
        assert reader.result() == (payload(100_000 + i), "eof")


def test_mixed_socket_objects_and_int_fds(make_pair, raw_fds):
    pairs = [make_pair() for _ in range(4)]
    handles: list[socket.socket | int] = []
    for i, (server, client) in enumerate(pairs):
        client.sendall(b"x" * (i + 1))
        client.shutdown(socket.SHUT_WR)
        handles.append(raw_fds.add(server.detach()) if i % 2 else server)

    results = pysock.close_many(handles, Drain(3.0))
    for h in handles:
        if isinstance(h, int):
            raw_fds.forget(h)

    assert [r.drained for r in results] == [1, 2, 3, 4]
    assert [r.reason for r in results] == ["eof"] * 4
    for h in handles:
        if isinstance(h, int):
            assert not fd_is_open(h)
        else:
            assert h.fileno() == -1
    for _, client in pairs:
        assert recv_all(client) == (b"", "eof")


POLICIES = [Graceful(), Abortive(), Drain(3.0), Linger(3.0)]
POLICY_IDS = ["Graceful", "Abortive", "Drain", "Linger"]


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_pipe_fd_in_list_raises_before_anything_is_closed(make_pair, pipe, policy, position):
    r, _ = pipe
    pairs = [make_pair() for _ in range(2)]
    handles: list[socket.socket | int] = [s for s, _ in pairs]
    handles.insert(position, r)

    with pytest.raises(NotASocketError):
        pysock.close_many(handles, policy)

    for server, client in pairs:
        assert_pair_intact(server, client)  # still open, the peer saw no FIN/RST
    assert pipe.works()


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
def test_closed_socket_in_list_raises_before_anything_is_closed(make_pair, policy):
    pairs = [make_pair() for _ in range(2)]
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.close()

    with pytest.raises(NotASocketError):
        pysock.close_many([pairs[0][0], dead, pairs[1][0]], policy)

    for server, client in pairs:
        assert_pair_intact(server, client)


@pytest.mark.parametrize("policy", [Drain(3.0), Linger(3.0)], ids=["Drain", "Linger"])
def test_udp_socket_in_list_raises_value_error_before_anything_is_closed(
    make_pair, udp_socket, policy
):
    pairs = [make_pair() for _ in range(2)]
    with pytest.raises(ValueError):
        pysock.close_many([pairs[0][0], udp_socket, pairs[1][0]], policy)
    for server, client in pairs:
        assert_pair_intact(server, client)
    assert udp_socket.fileno() != -1


@pytest.mark.parametrize(
    "policy", [Graceful(), Abortive(), Drain(1.0), Linger(1.0)], ids=POLICY_IDS
)
@pytest.mark.parametrize("second", ["object", "int"])
def test_duplicate_handle_raises_before_anything_is_closed(make_pair, policy, second):
    # The same socket twice would be freed twice: the second free could hit
    # a descriptor number another thread has just been given.
    (server, client), (other, other_client) = make_pair(), make_pair()
    dup = server if second == "object" else server.fileno()
    with pytest.raises((ValueError, NotASocketError)):
        pysock.close_many([server, other, dup], policy)
    assert_pair_intact(server, client)
    assert_pair_intact(other, other_client)


@pytest.mark.parametrize("bad", ["3", 2.5, None], ids=["str", "float", "None"])
def test_wrong_type_in_list_raises_type_error_before_anything_is_closed(make_pair, bad):
    pairs = [make_pair() for _ in range(2)]
    with pytest.raises(TypeError):
        pysock.close_many([pairs[0][0], bad, pairs[1][0]], Abortive())
    for server, client in pairs:
        assert_pair_intact(server, client)


def test_non_policy_raises_type_error_before_anything_is_closed(make_pair):
    pairs = [make_pair() for _ in range(2)]
    with pytest.raises(TypeError):
        pysock.close_many([s for s, _ in pairs], "abortive")
    for server, client in pairs:
        assert_pair_intact(server, client)


def test_accepts_a_generator(make_pair):
    pairs = [make_pair() for _ in range(3)]
    results = pysock.close_many((s for s, _ in pairs), Abortive())
    assert len(results) == 3
    assert all(s.fileno() == -1 for s, _ in pairs)


def test_more_sockets_than_the_stack_array(make_pair):
    # engine.c keeps 64 poll entries on the stack; more need the heap path.
    pairs = [make_pair() for _ in range(80)]
    for i, (_, client) in enumerate(pairs):
        client.sendall(b"y" * (i + 1))
        client.shutdown(socket.SHUT_WR)
    results = pysock.close_many([s for s, _ in pairs], Drain(3.0))
    assert [r.drained for r in results] == [i + 1 for i in range(80)]
    assert [r.reason for r in results] == ["eof"] * 80
    for _, client in pairs:
        assert recv_all(client) == (b"", "eof")
