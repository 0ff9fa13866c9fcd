"""A connection that ended before the close began: each way it can end,
through every API that lingers (Drain, Linger, close_many, drain(), the
Reaper).

- the peer sent FIN (still connected one way): the lingering close runs;
- the peer sent FIN, then RST (it closed, then got our answer): ``reset``;
- the peer reset while established: ``reset``;
- both sides closed gracefully, our input still unread: ``eof``, graceful;
- never connected, or a listener: ``not_connected``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from support import WINE_RST_AS_EOF, wine_xfail

import pysock
from pysock import CloseResult, Drain, Linger

REQUEST = b"POST /upload HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"b" * 5000
ANSWER = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"


def wait_not_connected(sock: socket.socket, timeout: float = 5.0) -> None:
    """Until the OS says the connection is over (getpeername fails), which
    leaves the socket's pending error in place for the close to find."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.getpeername()
        except OSError:
            return
        assert time.monotonic() < deadline, "the connection did not end"
        time.sleep(0.002)


def fin_then_rst(server: socket.socket, client: socket.socket) -> None:
    """The client sends its request and closes; the server answers, and the
    client's kernel replies to the answer with RST."""
    client.sendall(REQUEST)
    client.close()
    server.settimeout(5.0)
    assert server.recv(len(REQUEST)).startswith(b"POST")
    server.sendall(ANSWER)
    wait_not_connected(server)


def rst_established(server: socket.socket, client: socket.socket) -> None:
    client.sendall(REQUEST)
    pysock.abort(client)
    wait_not_connected(server)


def both_closed(server: socket.socket, client: socket.socket) -> None:
    """The client sends its request and FIN, we shut down our side, the
    exchange completes: not connected any more, the request still unread."""
    client.sendall(REQUEST)
    client.shutdown(socket.SHUT_WR)
    pysock.shutdown(server, "send")
    client.settimeout(5.0)
    assert client.recv(1) == b""  # our FIN arrived: the client ACKs it
    wait_not_connected(server)


def peer_fin(server: socket.socket, client: socket.socket) -> None:
    client.sendall(REQUEST)
    client.shutdown(socket.SHUT_WR)


Closer = Callable[[socket.socket], CloseResult]


def _reaper_close(policy: pysock.Policy) -> Closer:
    def close(sock: socket.socket) -> CloseResult:
        with pysock.Reaper() as reaper:
            return reaper.submit(sock, policy).result(10)

    return close


CLOSERS: dict[str, Closer] = {
    "Drain": lambda s: pysock.close(s, Drain(5.0)),
    "Linger": lambda s: pysock.close(s, Linger(5.0)),
    "close_many": lambda s: pysock.close_many([s], Drain(5.0))[0],
    "Reaper": _reaper_close(Drain(5.0)),
}


@pytest.fixture(params=sorted(CLOSERS))
def closer(request: pytest.FixtureRequest) -> Closer:
    return CLOSERS[request.param]


@pytest.mark.parametrize("end", [fin_then_rst, rst_established], ids=["fin_then_rst", "rst"])
@wine_xfail(WINE_RST_AS_EOF)
def test_reset_before_close_reports_reset(tcp_pair, closer, end):
    server, client = tcp_pair
    end(server, client)
    t0 = time.monotonic()
    result = closer(server)
    assert time.monotonic() - t0 < 2.0  # told at once, no waiting for a deadline
    assert (result.how, result.reason) == ("abortive", "reset")
    assert result.peer_eof is False
    assert server.fileno() == -1


def test_both_sides_closed_reports_eof_and_discards_the_input(tcp_pair):
    server, client = tcp_pair
    both_closed(server, client)
    result = pysock.close(server, Drain(5.0))
    assert (result.how, result.reason) == ("graceful", "eof")
    assert result.peer_eof is True
    assert result.drained == len(REQUEST)
    assert server.fileno() == -1


def test_both_sides_closed_linger_reports_acked(tcp_pair):
    server, client = tcp_pair
    both_closed(server, client)
    result = pysock.close(server, Linger(5.0))
    assert (result.how, result.reason) == ("graceful", "closed")
    assert result.acked is not False  # True where the OS can tell


def test_peer_fin_lingering_close_runs_to_eof(tcp_pair, closer):
    server, client = tcp_pair
    peer_fin(server, client)
    result = closer(server)
    assert result.how == "graceful"
    assert result.reason in ("eof", "closed")  # Linger ends when acked
    client.settimeout(5.0)
    assert client.recv(1) == b""  # the client got our FIN, not a reset


@pytest.mark.parametrize("end", [fin_then_rst, rst_established], ids=["fin_then_rst", "rst"])
@wine_xfail(WINE_RST_AS_EOF)
def test_drain_function_after_reset_reports_reset(tcp_pair, end):
    server, client = tcp_pair
    end(server, client)
    result = pysock.drain(server, 5.0)
    assert result.reason == "reset"
    assert result.eof is False
    assert server.fileno() != -1  # drain() never closes


def test_drain_function_after_both_closed_reads_to_eof(tcp_pair):
    server, client = tcp_pair
    both_closed(server, client)
    result = pysock.drain(server, 5.0)
    assert (result.reason, result.eof, result.drained) == ("eof", True, len(REQUEST))


def test_never_connected_and_listener_stay_not_connected(closer):
    never = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        for sock in (never, listener):
            result = closer(sock)
            assert (result.how, result.reason) == ("graceful", "not_connected")
            assert sock.fileno() == -1
    finally:
        for sock in (never, listener):
            if sock.fileno() != -1:
                sock.close()


def test_failed_drain_leaves_the_socket_usable():
    # drain() on a socket that never connected raises, and the socket object
    # keeps its handle and its blocking mode: connect() then works.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with pytest.raises(pysock.NotConnectedError):
                pysock.drain(sock, 1.0)
            assert sock.fileno() != -1
            assert sock.gettimeout() is None
            sock.connect(listener.getsockname())
            peer, _ = listener.accept()
            with peer:
                sock.sendall(b"x")
                peer.settimeout(5.0)
                assert peer.recv(1) == b"x"
        finally:
            sock.close()
