"""Helpers shared by the tests: peer-side observation of what a close did.

Everything here works on real sockets.  The peer's view is what counts: the
bytes it received, whether its stream ended with EOF (recv returns b"") or a
reset (ConnectionResetError), and whether a reset followed an EOF.
"""

from __future__ import annotations

import os
import random
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

LINUX = sys.platform.startswith("linux")
WINDOWS = sys.platform == "win32"


def _wine_version() -> str | None:
    """Wine's version when this Windows process runs under Wine, else None
    (ntdll exports wine_get_version only under Wine)."""
    if not WINDOWS:
        return None
    import ctypes

    try:
        get_version = ctypes.WinDLL("ntdll").wine_get_version
    except (OSError, AttributeError):
        return None
    get_version.restype = ctypes.c_char_p
    return str(get_version().decode())


WINE = _wine_version()


def wine_xfail(reason: str) -> pytest.MarkDecorator:
    """An expected failure under Wine only, strict: it fails the run once it
    passes, so a fixed deviation is noticed."""
    return pytest.mark.xfail(WINE is not None, reason=f"Wine {WINE}: {reason}", strict=True)


# Wine's known deviations from Windows.
WINE_RST_AS_EOF = "a received RST reads as EOF (recv returns b'', not WSAECONNRESET)"
WINE_NO_TCP_INFO = "no SIO_TCP_INFO: the kernel-linger fallback runs and acked is None"
PEER_TIMEOUT = 5.0  # every blocking peer read fails instead of hanging
MiB = 1024 * 1024
KiB = 1024


def payload(n: int, seed: int = 0) -> bytes:
    """n pseudo-random bytes: a lost, duplicated or reordered chunk shows."""
    return random.Random(n * 7919 + seed).randbytes(n)


def recv_all(sock: socket.socket, limit: int = 16 * MiB) -> tuple[bytes, str]:
    """Read until EOF or reset: (data, "eof" | "reset").

    A read that blocks longer than the socket's timeout raises TimeoutError,
    so a close that sent neither FIN nor RST fails the test."""
    if sock.gettimeout() is None:
        sock.settimeout(PEER_TIMEOUT)
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            data = sock.recv(256 * KiB)
            if not data:
                return b"".join(chunks), "eof"
            chunks.append(data)
            total += len(data)
            assert total <= limit, f"peer received more than {limit} bytes"
    except ConnectionResetError:
        return b"".join(chunks), "reset"


def reset_after_eof(sock: socket.socket, wait: float = 3.0) -> bool:
    """After the peer read EOF: was the connection then reset?

    Only for a peer that has not shut down its own sending side (a peer
    shut down both ways reports POLLHUP and fails a send anyway).

    POSIX: a reset connection reports POLLHUP/POLLERR (it is closed both
    ways) and a send on it fails at once; a connection that got only a FIN
    does not (POLLHUP needs both directions shut) and its first send
    succeeds.  Windows has no poll() in Python and its WSAPoll reports
    POLLHUP for a FIN too, but a recv after EOF raises WSAECONNRESET once
    the RST has arrived: it is retried until then, at most ``wait`` seconds."""
    if WINDOWS:
        deadline = time.monotonic() + wait
        old = sock.gettimeout()
        sock.settimeout(wait)
        try:
            while True:
                if sock.recv(1):
                    return False  # data after EOF: not this helper's case
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)  # no event tells a later RST on Windows
        except ConnectionResetError:
            return True
        finally:
            sock.settimeout(old)
    poller = select.poll()
    poller.register(sock.fileno(), 0)  # POLLHUP and POLLERR are always reported
    events = poller.poll(int(wait * 1000))
    if not events:
        return False
    try:
        sock.send(b"?")
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False


def no_reset_after_eof(sock: socket.socket) -> bool:
    """After the peer read EOF: True if the connection was not reset (a
    send from the peer still succeeds: the other side only sent FIN)."""
    try:
        sock.send(b"?")
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def wait_readable(sock: socket.socket | int, timeout: float = PEER_TIMEOUT) -> None:
    """Block until sock has input (or EOF/error); fail after timeout."""
    readable, _, _ = select.select([sock], [], [], timeout)
    assert readable, "timed out waiting for input"


def assert_pair_intact(server: socket.socket, client: socket.socket) -> None:
    """Both ends still open and connected both ways: no FIN, no RST."""
    assert server.fileno() != -1, "the socket object was closed or detached"
    assert client.fileno() != -1, "the peer socket was closed"
    old = server.gettimeout()
    server.settimeout(PEER_TIMEOUT)
    client.settimeout(PEER_TIMEOUT)
    try:
        server.sendall(b"s")
        assert client.recv(1) == b"s", "the peer saw EOF"
        client.sendall(b"c")
        assert server.recv(1) == b"c", "our receive side was shut down"
    finally:
        server.settimeout(old)


def fill_send_buffer(sock: socket.socket, limit: int = 8 * MiB) -> int:
    """Send until the kernel refuses more (the peer is not reading); return
    the bytes queued.  The socket is left in blocking mode."""
    chunk = payload(64 * KiB)
    sent = 0
    sock.setblocking(False)
    try:
        while sent < limit:
            sent += sock.send(chunk)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    assert 0 < sent < limit, f"could not fill the send buffer ({sent} bytes)"
    return sent


def open_fds() -> int | None:
    """The number of open descriptors (Windows: handles) of this process, or
    None where the system does not tell (Wine's GetProcessHandleCount is a
    stub that reports 0)."""
    if WINDOWS:
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32")
        count = wintypes.DWORD()
        if not kernel32.GetProcessHandleCount(
            wintypes.HANDLE(kernel32.GetCurrentProcess()), ctypes.byref(count)
        ):
            raise ctypes.WinError()
        return count.value or None
    if not os.path.isdir("/proc/self/fd"):
        return None
    return len(os.listdir("/proc/self/fd"))


COUNTS_HANDLES = open_fds() is not None
counts_handles = pytest.mark.skipif(
    not COUNTS_HANDLES, reason="this system does not tell its open handle count"
)


def fd_is_open(fd: int) -> bool:
    """POSIX: fd is an open descriptor (any kind); Windows: a socket handle."""
    if WINDOWS:
        import ctypes

        value, size = ctypes.c_int(), ctypes.c_int(ctypes.sizeof(ctypes.c_int))
        ws2_32 = ctypes.WinDLL("ws2_32")
        return (
            ws2_32.getsockopt(
                ctypes.c_size_t(fd),
                socket.SOL_SOCKET,
                socket.SO_TYPE,
                ctypes.byref(value),
                ctypes.byref(size),
            )
            == 0
        )
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def assert_blocking(sock: socket.socket, peer: socket.socket) -> None:
    """sock (with nothing to read) is in blocking mode, its handle too: a
    recv waits for the peer's byte, sent a moment later, instead of raising
    BlockingIOError (WSAEWOULDBLOCK) at once."""
    assert sock.gettimeout() is None
    timer = threading.Timer(0.2, peer.sendall, (b"b",))
    timer.start()
    try:
        assert sock.recv(1) == b"b"
    finally:
        timer.join()


def close_fd(fd: int) -> None:
    """Close a raw socket descriptor (os.close cannot close a Winsock handle)."""
    if WINDOWS:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd).close()
    else:
        os.close(fd)


class PeerThread(threading.Thread):
    """Runs fn(*args) in a thread; .result() joins and re-raises."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self._args = args
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self._fn(*self._args)
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = 10.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "peer thread did not finish"
        if self.error is not None:
            raise self.error
        return self.value
