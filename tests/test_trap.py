"""The trap (docs/design.md, The problem) and its cure.

A server reads only the head of a request with a large body, sends a large
response and closes.  The unread body makes the kernel answer the close with
RST, and the client loses the tail of the response it was sent.  A lingering
close (Drain) reads the rest first, and the client gets every byte."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from support import WINE_RST_AS_EOF, KiB, MiB, payload, recv_all, wait_readable, wine_xfail

import pysock
from pysock import CloseResult, Drain, Graceful

HEAD = b"POST /upload HTTP/1.1\r\nContent-Length: 262144\r\n\r\n"
REQUEST = HEAD + payload(256 * KiB, seed=3)
RESPONSE = payload(1 * MiB, seed=4)


def serve(make_pair, threads, close: Callable[[socket.socket], object]):
    """Run one exchange; return (what close returned, bytes the client got,
    how the client's stream ended)."""
    server, client = make_pair()
    sent = threading.Event()
    closed = threading.Event()

    def client_side() -> tuple[bytes, str]:
        client.sendall(REQUEST)
        client.shutdown(socket.SHUT_WR)  # the client is done sending
        sent.set()
        assert closed.wait(10), "server never closed"
        return recv_all(client)  # starts reading only after the close

    peer = threads.start(client_side)
    assert sent.wait(10), "client could not send its request"
    server.settimeout(5)  # a stuck send fails instead of hanging
    wait_readable(server)
    assert server.recv(16) == HEAD[:16]  # read the head, not the body
    server.sendall(RESPONSE)
    server.settimeout(None)
    try:
        result = close(server)
    finally:
        closed.set()
    received, end = peer.result()
    return result, received, end


@wine_xfail(WINE_RST_AS_EOF)
def test_plain_close_with_unread_request_body_loses_response_data(make_pair, threads):
    _, received, end = serve(make_pair, threads, lambda s: s.close())

    assert len(received) < len(RESPONSE)  # the client lost data...
    assert end == "reset"  # ...and was told so by a reset
    assert received == RESPONSE[: len(received)]  # what arrived is a clean prefix


@wine_xfail(WINE_RST_AS_EOF)
def test_pysock_graceful_reports_the_reset_it_causes(make_pair, threads):
    result, received, end = serve(make_pair, threads, lambda s: pysock.close(s, Graceful()))

    assert isinstance(result, CloseResult)
    assert result.how == "abortive"  # the truth: unread input made it an RST
    assert end == "reset"
    assert len(received) < len(RESPONSE)


def test_drain_close_delivers_the_whole_response(make_pair, threads):
    result, received, end = serve(make_pair, threads, lambda s: pysock.close(s, Drain(5.0)))

    assert isinstance(result, CloseResult)
    assert result.reason == "eof"
    assert result.how == "graceful"
    assert result.peer_eof is True
    assert result.drained == len(REQUEST) - 16  # the unread body, exactly
    assert end == "eof"
    assert len(received) == len(RESPONSE)
    assert received == RESPONSE
