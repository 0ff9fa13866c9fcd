"""The C core's native reaper (csrc/reaper.c) called directly through
pysock._core: proof that the binding compiles and works before the Python
Reaper is wired to it.  One Drain close over loopback, harvested with its
token; the peer sees its data read and our FIN; a bad handle is refused."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from pysock._core import ffi, lib

TOKEN = 0xFEED_0000_0001


@pytest.fixture
def reaper() -> Iterator[object]:
    err = ffi.new("ps_error *")
    r = lib.ps_reaper_new(0, 0, err)
    assert r != ffi.NULL, (err.code, err.oserr)
    try:
        yield r
    finally:
        lib.ps_reaper_free(r)


def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        server, _ = listener.accept()
    server.settimeout(5)
    return server, client


def test_one_drain_close_harvested(reaper: object) -> None:
    ours, peer = _pair()
    try:
        notify = lib.ps_reaper_notify_fd(reaper)
        assert select.select([notify], [], [], 0)[0] == []  # nothing yet
        peer.sendall(b"request bytes the server never read")
        err = ffi.new("ps_error *")
        rc = lib.ps_reaper_submit(reaper, ours.fileno(), lib.PS_DRAIN, 5.0, 0.0, 0, TOKEN, err)
        assert rc == lib.PS_DONE, (err.code, err.step)
        ours.detach()  # the reaper owns the handle now
        peer.shutdown(socket.SHUT_WR)  # the peer is done: Drain reads to EOF
        # A delivery thread's wait (called without the GIL), then the batch.
        assert lib.ps_reaper_wait(reaper, 5000) == 1
        assert select.select([notify], [], [], 0)[0] == [notify]
        out = ffi.new("ps_completion[]", 4)
        assert lib.ps_reaper_harvest(reaper, out, 4) == 1
        c = out[0]
        assert c.token == TOKEN
        assert c.status == lib.PS_DONE
        assert c.res.closed == 1
        assert c.res.reason == lib.PS_REASON_EOF
        assert c.res.how == lib.PS_HOW_GRACEFUL
        assert c.res.drained == len(b"request bytes the server never read")
        assert select.select([notify], [], [], 0)[0] == []  # emptied
        peer.settimeout(5)
        assert peer.recv(16) == b""  # our FIN, no reset
        stats = ffi.new("ps_reaper_stats *")
        lib.ps_reaper_get_stats(reaper, stats)
        assert (stats.submitted, stats.done, stats.failed, stats.in_flight) == (1, 1, 0, 0)
    finally:
        if ours.fileno() != -1:
            ours.close()
        peer.close()


def test_bad_handle_refused_untouched(reaper: object) -> None:
    ours, peer = _pair()
    try:
        err = ffi.new("ps_error *")
        # A datagram socket: Drain needs a stream; nothing is taken over.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            rc = lib.ps_reaper_submit(reaper, udp.fileno(), lib.PS_DRAIN, 1.0, 0.0, 0, 1, err)
            assert rc == lib.PS_FAIL
            assert err.code == lib.PS_ENOTSTREAM
            assert udp.fileno() != -1
        rc = lib.ps_reaper_submit(reaper, ours.fileno(), lib.PS_DRAIN, 0.0, 0.0, 0, 2, err)
        assert rc == lib.PS_FAIL and err.step == lib.PS_STEP_ARGS  # timeout 0
        ours.sendall(b"still ours")
        assert peer.recv(16) == b"still ours"
        lib.ps_reaper_close(reaper, 1.0)
        rc = lib.ps_reaper_submit(reaper, ours.fileno(), lib.PS_DRAIN, 1.0, 0.0, 0, 3, err)
        assert rc == lib.PS_REAPER_CLOSED
        assert lib.ps_reaper_wait(reaper, 0) == -1  # stopped, nothing waiting
        ours.sendall(b"x")
        assert peer.recv(1) == b"x"
    finally:
        ours.close()
        peer.close()
