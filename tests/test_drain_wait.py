"""A long drain of one blocking socket waits in recv itself (POSIX): its
SO_RCVTIMEO bounds each wait while the drain runs and is the socket's own
again afterwards; the byte count, EOF, the idle timer, the byte cap and
signals behave as with the poll wait."""

from __future__ import annotations

import signal
import socket
import struct
import sys
import threading
import time

import pytest
from support import KiB, payload

import pysock
from pysock import Drain

posix_only = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(signal, "setitimer"),
    reason="the recv wait is the POSIX drain's (Windows ops are non-blocking)",
)
pytestmark = posix_only

PIECE = 32 * KiB
TIMEVAL_LEN = struct.calcsize("ll")  # struct timeval (macOS: long + int, padded alike)


def rcvtimeo(sock: socket.socket) -> bytes:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL_LEN)


class Trickle(threading.Thread):
    """Sends `pieces` pieces of PIECE bytes `gap` seconds apart (each one a
    wake of the drain with data), reading the draining socket's SO_RCVTIMEO
    before the last; then closes, or with close=False stays silent until
    `done` is set."""

    def __init__(
        self,
        peer: socket.socket,
        drained: socket.socket,
        pieces: int,
        gap: float = 0.02,
        close: bool = True,
    ) -> None:
        super().__init__(daemon=True)
        self.peer, self.drained, self.pieces, self.gap, self.close_at_end = (
            peer,
            drained,
            pieces,
            gap,
            close,
        )
        self.timeo_during = b""
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(self.pieces):
                if i == self.pieces - 1:
                    self.timeo_during = rcvtimeo(self.drained)
                self.peer.sendall(payload(PIECE))
                time.sleep(self.gap)  # a pause that makes the next piece a new wake
            if self.close_at_end:
                self.peer.shutdown(socket.SHUT_WR)
            else:
                self.done.wait(10)
        except BaseException as exc:  # reported by the test
            self.error = exc


def start(peer: Trickle) -> Trickle:
    peer.start()
    return peer


@pytest.mark.parametrize("own", [None, (7, 250_000)])
def test_long_drain_waits_in_recv_and_gives_the_socket_its_timeout_back(tcp_pair, own):
    server, client = tcp_pair
    if own is not None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(*own))
    before = rcvtimeo(server)
    peer = start(Trickle(client, server, pieces=12))

    result = pysock.drain(server, timeout=10, idle=5)

    peer.join(10)
    assert peer.error is None
    assert (result.reason, result.eof, result.drained) == ("eof", True, 12 * PIECE)
    # While it ran the wait was bounded by a timeout of pysock's (at most a
    # slice, 50 ms), not the socket's own 7.25 s or none.
    assert peer.timeo_during not in (before, bytes(TIMEVAL_LEN))
    assert rcvtimeo(server) == before
    assert server.gettimeout() is None  # still blocking, as it was
    server.sendall(b"still open")
    assert client.recv(100) == b"still open"


def test_close_drain_waits_in_recv_and_the_peer_gets_fin(tcp_pair):
    server, client = tcp_pair
    peer = start(Trickle(client, server, pieces=10))

    result = pysock.close(server, Drain(timeout=10, idle=5))

    peer.join(10)
    assert peer.error is None
    assert (result.how, result.reason, result.drained) == ("graceful", "eof", 10 * PIECE)
    assert peer.timeo_during != bytes(TIMEVAL_LEN)
    assert server.fileno() == -1
    assert client.recv(100) == b""  # FIN, no reset


def test_idle_timer_ends_a_drain_that_waits_in_recv(tcp_pair):
    server, client = tcp_pair
    peer = start(Trickle(client, server, pieces=8, close=False))
    try:
        t0 = time.monotonic()
        result = pysock.drain(server, timeout=10, idle=0.3)
        wall = time.monotonic() - t0
    finally:
        peer.done.set()
        peer.join(10)
    assert peer.error is None
    assert (result.reason, result.eof, result.drained) == ("idle", False, 8 * PIECE)
    assert peer.timeo_during != bytes(TIMEVAL_LEN)
    # 8 pieces 20 ms apart, then 0.3 s idle: generous bounds only.
    assert 0.3 <= wall < 3.0
    assert rcvtimeo(server) == bytes(TIMEVAL_LEN)


def test_byte_cap_ends_a_drain_that_waits_in_recv(tcp_pair):
    server, client = tcp_pair
    cap = 9 * PIECE + 123
    peer = start(Trickle(client, server, pieces=12))

    result = pysock.drain(server, timeout=10, max_bytes=cap)

    peer.join(10)
    assert (result.reason, result.drained) == ("max_bytes", cap)
    assert rcvtimeo(server) == bytes(TIMEVAL_LEN)
    rest = b""
    client.shutdown(socket.SHUT_WR)  # the peer may already be done
    server.settimeout(5)
    while chunk := server.recv(64 * KiB):
        rest += chunk
    assert len(rest) == 12 * PIECE - cap  # nothing beyond the cap was discarded


class Alarm(Exception):
    """Raised by the SIGALRM handler."""


def test_a_raising_signal_handler_ends_a_drain_waiting_in_recv(tcp_pair):
    server, client = tcp_pair
    peer = start(Trickle(client, server, pieces=6, close=False))
    calls = []

    def handler(signum, frame):
        calls.append(time.monotonic())
        raise Alarm

    old = signal.signal(signal.SIGALRM, handler)
    try:
        # The pieces arrive within ~0.12 s; the alarm comes while the drain
        # waits in recv for more (its wait is far from any slice end).
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        t0 = time.monotonic()
        with pytest.raises(Alarm):
            pysock.drain(server, timeout=10, idle=8)
        wall = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        peer.done.set()
        peer.join(10)
    assert len(calls) == 1
    assert wall < 2.0  # promptly, not at the idle timer or the deadline
    assert rcvtimeo(server) == bytes(TIMEVAL_LEN)  # the socket's own again
    assert server.fileno() != -1  # drain() never closes


def test_non_blocking_socket_is_drained_with_poll_and_left_non_blocking(tcp_pair):
    server, client = tcp_pair
    server.settimeout(5)  # O_NONBLOCK underneath: its mode is not changed
    peer = start(Trickle(client, server, pieces=8))

    result = pysock.drain(server, timeout=10)

    peer.join(10)
    assert (result.reason, result.drained) == ("eof", 8 * PIECE)
    assert peer.timeo_during == bytes(TIMEVAL_LEN)  # poll waited, not recv
    assert server.gettimeout() == 5


def _timeval(sec: int, usec: int) -> bytes:
    return struct.pack("ll", sec, usec)
