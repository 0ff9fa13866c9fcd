"""Handle ownership: a closed socket object never frees a reused descriptor,
and no descriptor leaks over many closes."""

from __future__ import annotations

import gc
import os
import socket
import sys
import weakref

import pytest
from support import counts_handles, fd_is_open, open_fds, recv_all

import pysock
from pysock import Abortive, Drain, Graceful, Linger

POLICIES = [Graceful(), Abortive(), Linger(2.0), Drain(2.0)]
POLICY_IDS = ["Graceful", "Abortive", "Linger", "Drain"]


def reuse(fds: list[int], track) -> list[socket.socket]:
    """Open sockets until every number in fds is in use again (the lowest
    free number is always taken); return them all."""
    opened: list[socket.socket] = []
    while not set(fds) <= {s.fileno() for s in opened}:
        assert len(opened) < 64, "descriptor numbers were not reused"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        track(sock)
        opened.append(sock)
    return opened


def assert_usable(sock: socket.socket) -> None:
    """sock is an open socket that can connect and carry data."""
    assert fd_is_open(sock.fileno())
    with socket.create_server(("127.0.0.1", 0)) as lst:
        lst.settimeout(5)
        sock.settimeout(5)
        sock.connect(lst.getsockname())
        conn, _ = lst.accept()
        with conn:
            sock.sendall(b"alive")
            assert conn.recv(5) == b"alive"


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
def test_reused_fd_survives_collection_of_the_old_socket_object(make_pair, policy):
    server, client = make_pair()
    old_fd = server.fileno()
    client.close()  # the peer is gone: Drain and Linger finish at once
    pysock.close(server, policy)
    gone = weakref.ref(server)

    opened = reuse([old_fd], make_pair.track)
    new = next(s for s in opened if s.fileno() == old_fd)

    del server
    gc.collect()
    assert gone() is None  # the old object really was finalized

    assert new.fileno() == old_fd
    assert_usable(new)


def test_reused_fds_survive_close_many(make_pair):
    pairs = [make_pair() for _ in range(3)]
    for pair in pairs:
        pair[1].close()
    servers = [s for s, _ in pairs]
    fds = [s.fileno() for s in servers]
    refs = [weakref.ref(s) for s in servers]
    pysock.close_many(servers, Drain(2.0))
    assert all(s.fileno() == -1 for s in servers)

    opened = reuse(fds, make_pair.track)
    del servers, pairs, pair
    gc.collect()
    assert all(r() is None for r in refs)
    for sock in opened:
        if sock.fileno() in fds:
            assert_usable(sock)


@counts_handles
def test_no_descriptor_leak_over_1000_mixed_closes():
    policies = [Graceful(), Abortive(), Drain(2.0), Linger(2.0)]
    before = open_fds()
    lst = socket.create_server(("127.0.0.1", 0), backlog=64)
    lst.settimeout(5)
    addr = lst.getsockname()
    counts = {"graceful": 0, "abortive": 0}
    try:
        for i in range(1000):
            policy = policies[i % 4]
            client = socket.create_connection(addr, timeout=5)
            server, _ = lst.accept()
            if isinstance(policy, (Drain, Linger)):
                client.close()  # the peer has closed: no waiting
            handle = server.detach() if i % 8 >= 4 else server  # ints and objects
            try:
                result = pysock.close(handle, policy)
            finally:
                if isinstance(handle, socket.socket) and handle.fileno() != -1:
                    handle.close()
            counts[result.how] += 1
            if isinstance(handle, socket.socket):
                assert handle.fileno() == -1
            if client.fileno() != -1:
                client.close()
    finally:
        lst.close()
    assert counts["abortive"] >= 250
    assert open_fds() == before


@counts_handles
def test_close_many_does_not_leak_descriptors(make_pair):
    before = open_fds()
    for _ in range(20):
        pairs = [make_pair() for _ in range(10)]
        for _, client in pairs:
            client.close()
        results = pysock.close_many([s for s, _ in pairs], Drain(2.0))
        assert [r.reason for r in results] == ["eof"] * 10
        del pairs
    assert open_fds() == before


def test_int_fd_is_freed_and_number_reusable(tcp_pair, raw_fds):
    server, client = tcp_pair
    fd = raw_fds.add(server.detach())
    pysock.close(fd, Graceful())
    raw_fds.forget(fd)
    assert not fd_is_open(fd)
    assert recv_all(client) == (b"", "eof")
    if sys.platform == "win32":
        return  # Windows does not hand out the lowest free handle number
    with socket.socket() as a, socket.socket() as b:
        assert fd in (a.fileno(), b.fileno())  # the number is free again


_REUSED_CASES = [("close", p) for p in POLICIES] + [("close_many", p) for p in POLICIES]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX descriptor numbers (dup2)")
@pytest.mark.parametrize(
    ("call", "policy"),
    [*_REUSED_CASES, ("drain", None)],
    ids=[f"{c}-{i}" for c in ("close", "close_many") for i in POLICY_IDS] + ["drain"],
)
def test_socket_object_whose_descriptor_became_a_pipe_is_not_closed(make_pair, pipe, call, policy):
    """A socket object's type is known, so the core asks no SO_TYPE for it:
    the first system call on the handle is what refuses a descriptor that
    was closed and reused behind the object's back, and the pipe stays open.
    close_many checks every handle (SO_TYPE) before it touches any: the
    others are left as they were."""
    server, _ = make_pair("127.0.0.1")
    others = []
    for _ in range(9):  # 10 in all: close_many runs its epoll engine
        sock, peer = make_pair("127.0.0.1")
        peer.shutdown(socket.SHUT_WR)
        others.append(sock)
    r, w = pipe
    fd = server.fileno()
    os.dup2(w, fd)  # the object's descriptor is now the pipe's write end
    with pytest.raises(pysock.NotASocketError):
        if call == "close":
            pysock.close(server, policy)
        elif call == "close_many":
            pysock.close_many([*others, server], policy)
        else:
            pysock.drain(server, 1.0)
    assert server.fileno() == fd
    assert os.write(fd, b"still a pipe") == 12
    assert os.read(r, 100) == b"still a pipe"
    if call == "close_many":
        assert all(s.fileno() != -1 for s in others)  # nothing was touched
