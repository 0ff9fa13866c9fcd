"""Scenarios every server's integration test runs, against a server started
by a ``Launcher``: ``launcher(port, pysock, env) -> ServerProcess`` (the
server's own close when ``pysock`` is False, the integration's when True).

The servers log ``pysock.integrations`` at DEBUG to their output, one line
per lingering close: ``<server>: <how>/<reason>, drained N bytes in T s``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping

import pytest

from integrations.apps import PAGE, SMALL, STREAM_CHUNK, STREAM_CHUNKS
from integrations.harness import (
    BODY,
    CLIENTS,
    ServerProcess,
    free_port,
    keepalive_gets,
    read_response,
    run_cell,
)

Launcher = Callable[[int, bool, Mapping[str, str] | None], ServerProcess]

#: Requests per cell.
N = 10
#: An env that makes the lingering close end fast: the deadline tests.
SHORT = {"PYSOCK_DRAIN_TIMEOUT": "2", "PYSOCK_DRAIN_IDLE": "30", "PYSOCK_DRAIN_MAX_BYTES": "none"}

_CLOSE = re.compile(r"(\w+): (graceful|abortive)/(\w+), drained")


def need(module: str) -> None:
    """Skip (the test, or the module when called at import) unless
    ``module`` can be imported; with PYSOCK_REQUIRE_INTEGRATION=1, fail."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("PYSOCK_REQUIRE_INTEGRATION") == "1":
            raise RuntimeError(f"{module} is not installed (pip install -e '.[test]')")
        pytest.skip(f"{module} is not installed", allow_module_level=True)


def closes(output: str) -> list[tuple[str, str]]:
    """The (how, reason) of each lingering close the server logged."""
    found = []
    for line in output.splitlines():
        m = _CLOSE.search(line)
        if m:
            found.append((m.group(2), m.group(3)))
    return found


def cells(launch: Launcher, path: str, n: int = N) -> dict[tuple[bool, str], tuple[int, int]]:
    """Every client against the plain server and the integration: n uploads
    of 8 MiB each; prints the table row and returns {(pysock, client): (whole, n)}."""
    table: dict[tuple[bool, str], tuple[int, int]] = {}
    errors: dict[tuple[bool, str], list[str]] = {}
    for pysock in (False, True):
        port = free_port()
        with launch(port, pysock, None) as server:
            for name in CLIENTS:
                whole, total, errs = run_cell(name, server.url + path, n)
                table[(pysock, name)] = (whole, total)
                errors[(pysock, name)] = errs
    for pysock in (False, True):
        row = "  ".join(f"{c} {table[(pysock, c)][0]}/{table[(pysock, c)][1]}" for c in CLIENTS)
        print(f"{'pysock' if pysock else 'plain '}: {row}")
        for c in CLIENTS:
            for e in sorted(set(errors[(pysock, c)]))[:2]:
                print(f"    {c}: {e}")
    return table


def check_cells(table: dict[tuple[bool, str], tuple[int, int]]) -> None:
    """The integration: every response whole.  The control (the server's
    own close) loses at least one in all its cells together."""
    for c in CLIENTS:
        whole, total = table[(True, c)]
        assert whole == total, f"pysock/{c}: {whole}/{total} whole"
    plain_whole = sum(table[(False, c)][0] for c in CLIENTS)
    plain_total = sum(table[(False, c)][1] for c in CLIENTS)
    assert plain_whole < plain_total, "the control lost nothing: the test cannot tell the cure"


def keepalive(port: int) -> list[object]:
    """Several requests on one connection: GETs, a streamed response, two
    pipelined GETs; returns what was seen, for comparing plain and pysock."""
    seen: list[object] = []
    for status, body in keepalive_gets(port, 3):
        seen.append((status, body))
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_response(sock, buf)
        seen.append((status, len(body)))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(2):
            status, _, body = read_response(sock, buf)
            seen.append((status, body))
    return seen


EXPECTED_KEEPALIVE = [(200, SMALL)] * 3 + [(200, STREAM_CHUNK * STREAM_CHUNKS)] + [(200, SMALL)] * 2


def check_keepalive(launch: Launcher) -> None:
    results = {}
    for pysock in (False, True):
        port = free_port()
        with launch(port, pysock, None) as server:
            results[pysock] = keepalive(server.port)
    assert results[True] == EXPECTED_KEEPALIVE
    assert results[True] == results[False]


def _head(path: str, size: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def check_disconnect_mid_upload(launch: Launcher, path: str) -> None:
    """Clients that vanish mid-upload (a FIN, a RST) leave the server
    serving: later uploads are whole, nothing raised in the server."""
    port = free_port()
    with launch(port, True, SHORT) as server:
        for abort in (False, True):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                sock.sendall(_head(path, BODY) + b"x" * (1024 * 1024))
                if abort:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            finally:
                sock.close()
        whole, total, errs = run_cell("httpx", server.url + path, 3)
        assert (whole, total) == (3, 3), errs
        out = server.output()
    assert "Traceback" not in out, out


def check_never_reading_client(launch: Launcher, path: str) -> None:
    """A client that trickles its upload forever and never reads: the
    lingering close ends at the policy's deadline (2 s here) with a reset."""
    port = free_port()
    with launch(port, True, SHORT) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        start = time.monotonic()
        ended = None
        try:
            sock.sendall(_head(path, 1 << 40))
            while time.monotonic() - start < 20:
                sock.sendall(b"t" * 1024)
                time.sleep(0.02)
        except OSError as exc:  # EPIPE / ECONNRESET: the server let go
            ended = (time.monotonic() - start, exc)
        finally:
            sock.close()
        assert ended is not None, "the connection outlived the policy's deadline (2 s) by 18 s"
        assert ended[0] < 10, ended
        deadline = _wait_for(lambda: closes(server.output()), 5)
        assert deadline == [("abortive", "timeout")], server.output()


def _wait_for(probe: Callable[[], list[tuple[str, str]]], bound: float) -> list[tuple[str, str]]:
    end = time.monotonic() + bound
    while True:
        got = probe()
        if got or time.monotonic() > end:
            return got
        time.sleep(0.05)


def check_graceful_shutdown(launch: Launcher, path: str, clients: int = 4) -> None:
    """SIGTERM while lingering closes are in flight: the server waits for
    them — the clients got their whole responses, the closes end by the
    clients' EOF (sent 1.5 s after the signal), not cut at exit — and exits
    by itself well within the policy's deadline (6 s)."""
    env = {"PYSOCK_DRAIN_TIMEOUT": "6", "PYSOCK_DRAIN_IDLE": "30", "PYSOCK_DRAIN_MAX_BYTES": "none"}
    port = free_port()
    with launch(port, True, env) as server:
        socks = []
        try:
            for _ in range(clients):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append(sock)
                sock.sendall(_head(path, BODY) + b"x" * (256 * 1024))
            for sock in socks:  # the whole 413, then the server's FIN (Drain's shutdown)
                status, _, body = read_response(sock)
                assert (status, len(body)) == (413, PAGE)
                assert sock.recv(1) == b""
            server.signal(signal.SIGTERM)
            start = time.monotonic()
            timer = threading.Timer(1.5, lambda: [s.shutdown(socket.SHUT_WR) for s in socks])
            timer.start()
            try:
                server.proc.wait(12)
            finally:
                timer.cancel()
            took = time.monotonic() - start
        finally:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.close()
        out = server.output()
        # It exited by itself (uvicorn re-raises the SIGTERM it handled: -15).
        assert server.proc.returncode in (0, -signal.SIGTERM), (server.proc.returncode, out)
    assert took < 6, (took, out)
    assert closes(out) == [("graceful", "eof")] * clients, out
