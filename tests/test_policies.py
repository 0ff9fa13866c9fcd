"""Each policy and each CloseResult field, checked from the peer's side;
drain(), shutdown(), get/set_linger; socket objects and int fds."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from support import (
    LINUX,
    WINE_NO_TCP_INFO,
    WINE_RST_AS_EOF,
    KiB,
    MiB,
    fd_is_open,
    fill_send_buffer,
    no_reset_after_eof,
    payload,
    recv_all,
    reset_after_eof,
    wait_readable,
    wine_xfail,
)

import pysock
from pysock import Abortive, CloseResult, Drain, DrainResult, Graceful, Linger, LingerOption

linux_only = pytest.mark.skipif(not LINUX, reason="Linux-specific kernel behaviour")


def set_mode(sock: socket.socket, mode: str) -> None:
    """The same policy must behave the same on blocking and non-blocking sockets."""
    if mode == "nonblocking":
        sock.setblocking(False)
    elif mode == "timeout":
        sock.settimeout(2.0)


MODES = ["blocking", "nonblocking", "timeout"]


def assert_acked_known(result: CloseResult) -> None:
    """On Linux the OS can tell (SIOCOUTQ): acked is a bool, never None."""
    if LINUX:
        assert isinstance(result.acked, bool)


# ------------------------------------------------------------------ Graceful


@pytest.mark.parametrize("explicit", [True, False], ids=["Graceful()", "default"])
def test_graceful_peer_receives_queued_data_then_eof(tcp_pair, explicit):
    server, client = tcp_pair
    data = payload(256 * KiB)
    server.sendall(data)  # queued; the peer has not read anything yet

    t0 = time.monotonic()
    result = pysock.close(server, Graceful()) if explicit else pysock.close(server)
    wall = time.monotonic() - t0

    assert isinstance(result, CloseResult)
    assert result.how == "graceful"
    assert result.reason == "closed"
    assert result.peer_eof is False
    assert result.drained == 0
    assert 0 <= result.elapsed <= wall + 0.01
    assert wall < 1.0  # returns at once
    assert_acked_known(result)
    assert server.fileno() == -1

    received, end = recv_all(client)
    assert end == "eof"
    assert received == data
    assert no_reset_after_eof(client)


@linux_only
def test_graceful_with_unacknowledged_data_reports_acked_false_and_peer_still_gets_all(
    make_pair,
):
    server, client = make_pair(client_rcvbuf=4 * KiB)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    sent = fill_send_buffer(server)

    result = pysock.close(server, Graceful())

    assert result.how == "graceful"
    assert result.reason == "closed"
    assert result.acked is False  # the peer's window is closed: data unacknowledged
    received, end = recv_all(client)
    assert end == "eof"  # the kernel kept sending in the background
    assert len(received) == sent


@linux_only
def test_graceful_with_unread_input_reports_abortive_and_peer_is_reset(tcp_pair):
    server, client = tcp_pair
    client.sendall(b"request the server never reads")
    wait_readable(server)  # the bytes are in the server's receive buffer

    result = pysock.close(server, Graceful())

    assert result.how == "abortive"
    assert result.reason == "closed"
    assert server.fileno() == -1
    with pytest.raises(ConnectionResetError):
        client.recv(1024)


@linux_only
@pytest.mark.parametrize("handle", ["socket", "int"])
@pytest.mark.parametrize("unread", [False, True])
@pytest.mark.parametrize("unacked", [False, True])
def test_graceful_reports_the_queues_the_same_for_socket_objects_and_ints(
    make_pair, raw_fds, handle, unread, unacked
):
    # A socket object is known to be TCP: the core asks SO_MEMINFO which of
    # FIONREAD and SIOCOUTQ it needs; an int handle asks both.  The answers
    # must be the same, and what the peer sees must match `how`.
    server, client = make_pair(client_rcvbuf=4 * KiB)
    if unread:
        client.sendall(b"request the server never reads")
        wait_readable(server)
    if unacked:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
        fill_send_buffer(server)  # the peer's window is closed
    if handle == "int":
        fd = raw_fds.add(server.detach())
        result = pysock.close(fd, Graceful())
        raw_fds.forget(fd)
        assert not fd_is_open(fd)
    else:
        result = pysock.close(server, Graceful())
        assert server.fileno() == -1

    assert (result.how, result.reason) == ("abortive" if unread else "graceful", "closed")
    assert result.acked is (not unacked)
    _, end = recv_all(client)
    assert end == ("reset" if unread else "eof")


def test_graceful_with_unread_input_on_a_unix_stream_socket_reports_abortive():
    # AF_UNIX charges queued input to the sender, so its receiver's memory
    # counters say nothing: the core must still ask FIONREAD (Linux: the
    # peer then gets ECONNRESET).
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no AF_UNIX")
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        peer.sendall(b"never read")
        wait_readable(ours)
        result = pysock.close(ours, Graceful())
        assert ours.fileno() == -1
        if LINUX:
            assert result.how == "abortive"
            peer.settimeout(5)
            with pytest.raises(ConnectionResetError):
                peer.recv(10)
    finally:
        ours.close()
        peer.close()


@pytest.mark.parametrize("seconds", [0, 5])
def test_graceful_overrides_a_kernel_linger_option_set_earlier(make_pair, seconds):
    # {1,0} would make the close an RST; {1,5} would block close for 5 s
    # while the peer does not read.  Graceful means l_onoff=0 and close.
    server, client = make_pair(client_rcvbuf=4 * KiB)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    sent = fill_send_buffer(server)
    pysock.set_linger(server, True, seconds)

    t0 = time.monotonic()
    result = pysock.close(server, Graceful())
    wall = time.monotonic() - t0

    assert result.how == "graceful"
    assert wall < 1.0
    received, end = recv_all(client)
    assert end == "eof"
    assert len(received) == sent


# ------------------------------------------------------------------ Abortive


@pytest.mark.parametrize("call", ["abort", "close_abortive"])
@wine_xfail(WINE_RST_AS_EOF)
def test_abortive_peer_gets_reset(any_pair, call):
    server, client = any_pair
    server.sendall(b"x" * 1000)

    t0 = time.monotonic()
    result = pysock.abort(server) if call == "abort" else pysock.close(server, Abortive())
    wall = time.monotonic() - t0

    assert result.how == "abortive"
    assert result.reason == "closed"
    assert result.peer_eof is False
    assert result.drained == 0
    assert 0 <= result.elapsed <= wall + 0.01
    assert wall < 1.0
    assert_acked_known(result)
    assert server.fileno() == -1
    _, end = recv_all(client)
    assert end == "reset"


@linux_only
def test_abortive_leaves_no_time_wait(tcp_pair):
    server, client = tcp_pair
    ours = f":{server.getsockname()[1]:04X}"
    theirs = f":{client.getsockname()[1]:04X}"
    pysock.abort(server)
    client.close()  # after a FIN exchange, our side would now be in TIME_WAIT
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    states = [row[3] for row in rows if row[1].endswith(ours) and row[2].endswith(theirs)]
    assert "06" not in states  # 06 = TIME_WAIT


# -------------------------------------------------------------------- Linger


@pytest.mark.parametrize("mode", MODES)
@wine_xfail(WINE_NO_TCP_INFO)
def test_linger_peer_receives_all_data_and_eof_acked(tcp_pair, threads, mode):
    server, client = tcp_pair
    data = payload(1 * MiB)
    reader = threads.start(recv_all, client)
    server.sendall(data)
    set_mode(server, mode)

    t0 = time.monotonic()
    result = pysock.close(server, Linger(3.0))
    wall = time.monotonic() - t0

    assert result.how == "graceful"
    assert result.reason == "closed"
    assert result.acked is True
    assert result.drained == 0
    assert wall < 2.5  # returned when acknowledged, well before the deadline
    assert 0 <= result.elapsed <= wall + 0.01
    assert server.fileno() == -1
    received, end = reader.result()
    assert end == "eof"
    assert received == data


@pytest.mark.parametrize("mode", MODES)
@wine_xfail(WINE_NO_TCP_INFO)
def test_linger_deadline_with_unacknowledged_data_is_abortive_timeout(make_pair, mode):
    server, client = make_pair(client_rcvbuf=4 * KiB)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    sent = fill_send_buffer(server)  # the peer never reads: data cannot be acked
    set_mode(server, mode)

    t0 = time.monotonic()
    result = pysock.close(server, Linger(1.0))
    wall = time.monotonic() - t0

    assert result.how == "abortive"
    assert result.reason == "timeout"
    assert result.acked is False
    assert result.peer_eof is False
    assert 0.5 <= wall <= 3.0
    assert 0.5 <= result.elapsed <= 3.0
    assert server.fileno() == -1
    received, end = recv_all(client)
    assert end == "reset"
    assert len(received) < sent


@wine_xfail(WINE_NO_TCP_INFO)
def test_linger_subsecond_timeout_honoured(make_pair):
    server, _client = make_pair(client_rcvbuf=4 * KiB)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    fill_send_buffer(server)

    t0 = time.monotonic()
    result = pysock.close(server, Linger(0.2))
    wall = time.monotonic() - t0

    assert result.reason == "timeout"
    assert 0.1 <= wall <= 1.5


@wine_xfail(WINE_RST_AS_EOF)
def test_linger_peer_reset_during_wait_reports_reset_promptly(make_pair, threads):
    server, client = make_pair(client_rcvbuf=4 * KiB)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    fill_send_buffer(server)  # Linger has to wait for the peer

    def peer() -> None:
        threading.Event().wait(0.3)  # let the close start waiting
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST

    thread = threads.start(peer)
    t0 = time.monotonic()
    result = pysock.close(server, Linger(4.0))
    wall = time.monotonic() - t0
    thread.result()

    assert result.reason == "reset"
    assert result.acked is not True
    assert 0.2 <= wall < 3.0  # ended by the reset, not the 4 s deadline
    assert server.fileno() == -1


# --------------------------------------------------------------------- Drain


def _peer_send_then_read(client: socket.socket, data: bytes) -> tuple[bytes, str]:
    """A well-behaved peer: sends its request, half-closes, reads the reply."""
    client.sendall(data)
    client.shutdown(socket.SHUT_WR)
    return recv_all(client)


@pytest.mark.parametrize("mode", MODES)
def test_drain_reads_until_peer_eof(any_pair, threads, mode):
    server, client = any_pair
    ours = payload(64 * KiB, seed=1)
    theirs = payload(300 * KiB, seed=2)
    server.sendall(ours)
    peer = threads.start(_peer_send_then_read, client, theirs)
    set_mode(server, mode)

    result = pysock.close(server, Drain(5.0))

    assert result.how == "graceful"
    assert result.reason == "eof"
    assert result.peer_eof is True
    assert result.drained == len(theirs)
    assert 0 <= result.elapsed < 4.0
    assert_acked_known(result)
    assert server.fileno() == -1
    received, end = peer.result()
    assert end == "eof"
    assert received == ours


@wine_xfail(WINE_RST_AS_EOF)
def test_drain_deadline_when_peer_never_closes(any_pair):
    server, client = any_pair

    t0 = time.monotonic()
    result = pysock.close(server, Drain(1.0, idle=None))
    wall = time.monotonic() - t0

    assert result.how == "abortive"
    assert result.reason == "timeout"
    assert result.peer_eof is False
    assert result.drained == 0
    assert 0.5 <= wall <= 3.0
    assert 0.5 <= result.elapsed <= 3.0
    assert server.fileno() == -1
    received, end = recv_all(client)
    assert (received, end) == (b"", "eof")  # our shutdown(send)...
    assert reset_after_eof(client)  # ...then RST at the deadline


def test_drain_subsecond_timeout_honoured(tcp_pair):
    server, _client = tcp_pair
    t0 = time.monotonic()
    result = pysock.close(server, Drain(0.2, idle=None))
    wall = time.monotonic() - t0
    assert result.reason == "timeout"
    assert 0.1 <= wall <= 1.5


@wine_xfail(WINE_RST_AS_EOF)
def test_drain_idle_timer(tcp_pair):
    server, client = tcp_pair
    client.sendall(b"a few bytes, then silence")
    sent = len(b"a few bytes, then silence")

    t0 = time.monotonic()
    result = pysock.close(server, Drain(timeout=4.0, idle=0.3))
    wall = time.monotonic() - t0

    assert result.reason == "idle"
    assert result.how == "abortive"
    assert result.peer_eof is False
    assert result.drained == sent
    assert 0.15 <= wall <= 2.0  # the idle timer, not the 4 s deadline
    assert client.recv(10) == b""
    assert reset_after_eof(client)


@wine_xfail(WINE_RST_AS_EOF)
def test_drain_max_bytes(tcp_pair):
    server, client = tcp_pair
    client.sendall(payload(64 * KiB))
    cap = 10_000

    result = pysock.close(server, Drain(3.0, max_bytes=cap))

    assert result.reason == "max_bytes"
    assert result.how == "abortive"
    assert result.drained == cap
    assert result.peer_eof is False
    assert result.elapsed < 2.0
    _, end = recv_all(client)
    if end == "eof":
        assert reset_after_eof(client)
    else:
        assert end == "reset"


@wine_xfail(WINE_RST_AS_EOF)
def test_drain_after_peer_reset_reports_reset(tcp_pair):
    server, client = tcp_pair
    pysock.abort(client)  # the peer resets first
    wait_readable(server)

    result = pysock.close(server, Drain(3.0))  # a result, not an exception

    assert result.reason == "reset"
    assert result.peer_eof is False
    assert result.elapsed < 2.0
    assert server.fileno() == -1


@wine_xfail(WINE_RST_AS_EOF)
def test_drain_peer_resets_during_drain_reports_reset(tcp_pair, threads):
    server, client = tcp_pair

    def peer() -> None:
        assert client.recv(1) == b""  # Drain has started: we see its FIN
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST

    thread = threads.start(peer)
    t0 = time.monotonic()
    result = pysock.close(server, Drain(4.0, idle=None))
    wall = time.monotonic() - t0
    thread.result()

    assert result.reason == "reset"
    assert result.peer_eof is False
    assert wall < 3.0  # ended by the reset, not the deadline
    assert server.fileno() == -1


def test_drain_idle_timer_restarts_on_every_arrival(tcp_pair, threads):
    # Data every 0.1 s: never 0.4 s idle, so the 1 s deadline ends it.
    server, client = tcp_pair
    stop = threading.Event()

    def trickle() -> int:
        sent = 0
        while not stop.wait(0.1):
            try:
                client.send(b"t" * 100)
            except OSError:
                break
            sent += 100
            if sent >= 100 * 40:  # at most 4 s of trickle
                break
        return sent

    thread = threads.start(trickle)
    t0 = time.monotonic()
    result = pysock.close(server, Drain(timeout=1.0, idle=0.4))
    wall = time.monotonic() - t0
    stop.set()
    thread.result()

    assert result.reason == "timeout"
    assert result.drained >= 300  # it kept reading what trickled in
    assert 0.8 <= wall <= 3.0


@pytest.mark.parametrize("policy", [Drain(2.0), Linger(2.0)], ids=["Drain", "Linger"])
def test_never_connected_socket_reports_not_connected_and_is_closed(policy):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t0 = time.monotonic()
        result = pysock.close(sock, policy)
        assert time.monotonic() - t0 < 1.0
        assert result.reason == "not_connected"
        assert result.how == "graceful"
        assert result.peer_eof is False
        assert result.drained == 0
        assert sock.fileno() == -1
    finally:
        if sock.fileno() != -1:
            sock.close()


@pytest.mark.parametrize("policy", [Drain(2.0), Linger(2.0)], ids=["Drain", "Linger"])
def test_listener_reports_not_connected_and_is_closed(policy):
    lst = socket.create_server(("127.0.0.1", 0))
    addr = lst.getsockname()
    try:
        t0 = time.monotonic()
        result = pysock.close(lst, policy)
        assert time.monotonic() - t0 < 1.0
        assert result.reason == "not_connected"
        assert result.how == "graceful"
        assert lst.fileno() == -1
    finally:
        if lst.fileno() != -1:
            lst.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(addr, timeout=2).close()


# --------------------------------------------------------- drain() (no close)


def test_drain_function_reads_to_eof_and_leaves_socket_open(tcp_pair):
    server, client = tcp_pair
    theirs = payload(200 * KiB)
    client.sendall(theirs)
    client.shutdown(socket.SHUT_WR)

    result = pysock.drain(server, 3.0)

    assert isinstance(result, DrainResult)
    assert result.drained == len(theirs)
    assert result.eof is True
    assert result.reason == "eof"
    assert 0 <= result.elapsed < 2.0
    assert server.fileno() != -1
    # Not shut down, not closed: our direction still works.
    server.sendall(b"still here")
    assert client.recv(100) == b"still here"


def test_drain_function_timeout_leaves_connection_intact(tcp_pair):
    server, client = tcp_pair
    t0 = time.monotonic()
    result = pysock.drain(server, 0.3)
    wall = time.monotonic() - t0

    assert result.reason == "timeout"
    assert result.eof is False
    assert result.drained == 0
    assert 0.15 <= wall <= 1.5
    assert server.fileno() != -1
    client.sendall(b"x")
    server.settimeout(5)
    assert server.recv(1) == b"x"
    server.sendall(b"y")
    assert client.recv(1) == b"y"  # the peer saw no FIN and no RST


def test_drain_function_max_bytes_leaves_the_rest_readable(tcp_pair):
    server, client = tcp_pair
    theirs = payload(5000)
    client.sendall(theirs)
    wait_readable(server)

    result = pysock.drain(server, 3.0, max_bytes=1000)

    assert result.reason == "max_bytes"
    assert result.drained == 1000
    assert result.eof is False
    server.settimeout(5)
    rest = b""
    while len(rest) < 4000:
        chunk = server.recv(4000 - len(rest))
        assert chunk
        rest += chunk
    assert rest == theirs[1000:]


def test_drain_function_idle(tcp_pair):
    server, _client = tcp_pair
    t0 = time.monotonic()
    result = pysock.drain(server, 4.0, idle=0.2)
    wall = time.monotonic() - t0
    assert result.reason == "idle"
    assert result.eof is False
    assert 0.1 <= wall <= 1.5
    assert server.fileno() != -1


@wine_xfail(WINE_RST_AS_EOF)
def test_drain_function_after_peer_reset_reports_reset(tcp_pair):
    server, client = tcp_pair
    pysock.abort(client)
    wait_readable(server)
    result = pysock.drain(server, 3.0)
    assert result.reason == "reset"
    assert result.eof is False
    assert result.elapsed < 2.0
    assert server.fileno() != -1  # drain() never closes


# ------------------------------------------------------------------ shutdown


@pytest.mark.parametrize("how", ["send", socket.SHUT_WR])
def test_shutdown_send_peer_sees_eof_and_socket_stays_open(tcp_pair, how):
    server, client = tcp_pair
    server.sendall(b"last words")
    pysock.shutdown(server, how)
    received, end = recv_all(client)
    assert (received, end) == (b"last words", "eof")
    assert server.fileno() != -1
    client.sendall(b"reply")  # our receive direction still works
    server.settimeout(5)
    assert server.recv(100) == b"reply"


def test_shutdown_default_is_send(tcp_pair):
    server, client = tcp_pair
    pysock.shutdown(server)
    assert client.recv(10) == b""
    assert no_reset_after_eof(client)


@pytest.mark.parametrize("how", ["receive", socket.SHUT_RD])
def test_shutdown_receive_peer_sees_no_eof(tcp_pair, how):
    server, client = tcp_pair
    pysock.shutdown(server, how)
    server.sendall(b"still sending")  # our send direction is untouched
    assert client.recv(100) == b"still sending"
    if LINUX:
        server.settimeout(5)
        assert server.recv(10) == b""  # our receive direction is shut


@pytest.mark.parametrize("how", ["both", socket.SHUT_RDWR])
def test_shutdown_both(tcp_pair, how):
    server, client = tcp_pair
    pysock.shutdown(server, how)
    assert client.recv(10) == b""
    with pytest.raises(BrokenPipeError):
        server.send(b"x")
    assert server.fileno() != -1


# -------------------------------------------------------- get/set_linger


@pytest.mark.parametrize(("enabled", "seconds"), [(True, 0), (True, 1), (True, 65535), (False, 0)])
def test_set_linger_get_linger_round_trip(tcp_pair, enabled, seconds):
    server, _client = tcp_pair
    pysock.set_linger(server, enabled, seconds)
    assert pysock.get_linger(server) == LingerOption(enabled=enabled, seconds=seconds)
    # The kernel agrees (Linux, seconds):
    if LINUX:
        raw = server.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
        onoff, secs = struct.unpack("ii", raw)
        assert (bool(onoff), secs) == (enabled, seconds)


def test_get_linger_default_is_off(tcp_pair):
    server, _client = tcp_pair
    option = pysock.get_linger(server)
    assert option == LingerOption(enabled=False, seconds=0)


def test_get_linger_accepts_int_fd(tcp_pair):
    server, _client = tcp_pair
    pysock.set_linger(server.fileno(), True, 7)
    assert pysock.get_linger(server.fileno()) == LingerOption(True, 7)


# ------------------------------------------------- socket objects and int fds


@pytest.mark.parametrize(
    "policy",
    [Graceful(), Abortive(), Linger(2.0), Drain(2.0)],
    ids=["Graceful", "Abortive", "Linger", "Drain"],
)
def test_socket_object_is_detached_after_close(tcp_pair, policy):
    server, client = tcp_pair
    fd = server.fileno()
    client.close()  # the peer is done: Drain sees EOF at once
    pysock.close(server, policy)
    assert server.fileno() == -1
    assert not fd_is_open(fd)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Graceful(), ("graceful", "closed", "eof")),
        pytest.param(
            Abortive(), ("abortive", "closed", "reset"), marks=wine_xfail(WINE_RST_AS_EOF)
        ),
        (Linger(2.0), ("graceful", "closed", "eof")),
    ],
    ids=["Graceful", "Abortive", "Linger"],
)
def test_int_fd_is_closed_by_policy(tcp_pair, raw_fds, policy, expected):
    server, client = tcp_pair
    server.sendall(b"data")
    fd = raw_fds.add(server.detach())

    result = pysock.close(fd, policy)
    raw_fds.forget(fd)

    how, reason, peer_end = expected
    assert (result.how, result.reason) == (how, reason)
    assert not fd_is_open(fd)
    received, end = recv_all(client)
    assert end == peer_end
    if peer_end == "eof":
        assert received == b"data"


def test_int_fd_drain(tcp_pair, raw_fds, threads):
    server, client = tcp_pair
    fd = raw_fds.add(server.detach())
    peer = threads.start(_peer_send_then_read, client, payload(10 * KiB))

    result = pysock.close(fd, Drain(3.0))
    raw_fds.forget(fd)

    assert result.reason == "eof"
    assert result.drained == 10 * KiB
    assert not fd_is_open(fd)
    assert peer.result() == (b"", "eof")


@wine_xfail(WINE_RST_AS_EOF)
def test_abort_accepts_int_fd(tcp_pair, raw_fds):
    server, client = tcp_pair
    fd = raw_fds.add(server.detach())
    result = pysock.abort(fd)
    raw_fds.forget(fd)
    assert result.how == "abortive"
    assert not fd_is_open(fd)
    with pytest.raises(ConnectionResetError):
        client.recv(10)


def test_shutdown_accepts_int_fd(tcp_pair):
    server, client = tcp_pair
    pysock.shutdown(server.fileno(), "send")
    assert client.recv(10) == b""
    assert server.fileno() != -1
