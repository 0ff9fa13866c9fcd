"""What the threaded servers' tests share (on top of harness.py): the
launcher's command line, the upload matrix, and raw clients that misbehave
(disconnect mid-upload, never read)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from integrations.harness import (
    BODY,
    CLIENTS,
    ServerProcess,
    free_port,
    keepalive_gets,
    read_response,
    run_cell,
    start_server,
)

HERE = os.path.dirname(os.path.abspath(__file__))
WSGI_LAUNCH = os.path.join(HERE, "wsgi_launch.py")
ROOT = os.path.dirname(os.path.dirname(HERE))
#: Uploads per cell (server x client x close).
N = 10
#: A short policy for the deadline tests.
SHORT_POLICY = {"PYSOCK_DRAIN_TIMEOUT": "2", "PYSOCK_DRAIN_IDLE": "2"}


def launch_argv(server: str, port: int, pysock: bool, *extra: str) -> list[str]:
    argv = [sys.executable, WSGI_LAUNCH, server, "--port", str(port), *extra]
    if pysock:
        argv.append("--pysock")
    return argv


def matrix(url: str, n: int = N) -> dict[str, tuple[int, int, list[str]]]:
    """One cell per client: {client: (whole, total, errors)}."""
    return {name: run_cell(name, url, n) for name in CLIENTS}


def describe(cells: dict[str, tuple[int, int, list[str]]]) -> str:
    parts = []
    for name, (whole, total, errors) in cells.items():
        first = f" (e.g. {errors[0][:70]})" if errors else ""
        parts.append(f"{name} {whole}/{total}{first}")
    return ", ".join(parts)


def total_whole(cells: dict[str, tuple[int, int, list[str]]]) -> tuple[int, int]:
    return sum(w for w, _, _ in cells.values()), sum(t for _, t, _ in cells.values())


def _request_head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def disconnect_mid_upload(port: int, sent: int = 1024 * 1024, reset: bool = False) -> None:
    """Announce BODY bytes, send ``sent`` of them, then go away (FIN, or RST
    with ``reset``) without reading anything."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(_request_head("/", BODY))
        chunk = b"u" * 65536
        for _ in range(sent // len(chunk)):
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server answered and closed: fine
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    finally:
        sock.close()


class NeverReads:
    """A client that uploads forever, a little at a time (so an idle limit
    never ends it), and never reads its response.

    Its receive buffer is made big enough for the whole response, so the
    server's write completes and the server goes on to close.  ``ended``
    is set when a send fails (the server reset the connection);
    ``response_arrived()`` peeks at the receive queue for the status line."""

    def __init__(self, port: int, interval: float = 0.1, chunk: int = 1024, burst: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * 1024 * 1024)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(_request_head("/", BODY))
        self.sent = 0
        if burst:
            self.sock.sendall(b"u" * burst)
            self.sent = burst
        self.interval = interval
        self.chunk = b"u" * chunk
        self.started = time.monotonic()
        self.ended = threading.Event()
        self.end_time: float | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < BODY - len(self.chunk):
            try:
                self.sock.sendall(self.chunk)
            except OSError as exc:
                self.error = exc
                self.end_time = time.monotonic()
                self.ended.set()
                return
            self.sent += len(self.chunk)
            self._stop.wait(self.interval)

    def response_arrived(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                data = b""
            except OSError:
                return False
            if data.startswith((b"HTTP/1.1 413", b"HTTP/1.0 413")):
                return True
            time.sleep(0.02)
        return False

    def read_response(self) -> tuple[int, bytes]:
        """After the end: the response as it sits in the receive queue."""
        self.sock.settimeout(5)
        status, _headers, body = read_response(self.sock)
        return status, body

    def read_until_fin(self, timeout: float = 10.0) -> tuple[int, bytes]:
        """Read the response, then wait for the server's FIN: the lingering
        close has begun (it shuts our direction down first) while this
        client goes on uploading."""
        status, body = self.read_response()
        self.sock.settimeout(timeout)
        assert self.sock.recv(1) == b"", "more than one response"
        return status, body

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self.sock.close()


def import_fails_without(module: str, server_modules: list[str]) -> str:
    """Import ``module`` in a fresh interpreter where each of
    ``server_modules`` is missing (``sys.modules[name] = None``); the
    ImportError's text (or raises AssertionError if the import worked)."""
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in server_modules)
    code = (
        f"import sys; {blocked}\n"
        "try:\n"
        f"    import {module}\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ImportError:"), out.stdout
    return out.stdout


def pipelined_after_close(port: int, body: int = BODY) -> tuple[int | None, int, str | None]:
    """A request that ends the connection (``Connection: close``, no body),
    pipelined with a second request carrying ``body`` bytes that the server
    will never read, sent in full before the response is read (as httpx and
    requests do with one upload); the first response as received: (status,
    body bytes, error)."""
    first = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    second = _request_head("/", body)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(first + second)
            chunk = b"u" * 65536
            for _ in range(body // len(chunk)):
                sock.sendall(chunk)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(20)
    status: int | None = None
    received = 0
    error: str | None = None
    buf = bytearray()
    try:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("EOF before the status line")
            buf += data
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        status = int(head.split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        received = len(rest)
        while received < length:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"EOF after {received} of {length} bytes")
            received += len(data)
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()
        sender.join(10)
    return status, received, error


def launched(
    server: str, pysock: bool, env: dict[str, str] | None = None, *extra: str
) -> ServerProcess:
    """``wsgi_launch.py SERVER`` on a free port, its integration's closes
    logged (``pysock-log: ...``) and its counters printed at exit."""
    port = free_port()
    full_env = {"PYSOCK_TEST_LOG": "1", "PYSOCK_TEST_STATS": "1", **(env or {})}
    return start_server(launch_argv(server, port, pysock, *extra), port, full_env, cwd=ROOT)


def check_cells(
    label: str,
    plain: dict[str, tuple[int, int, list[str]]],
    ours: dict[str, tuple[int, int, list[str]]],
    capsys: pytest.CaptureFixture[str],
    *,
    plain_must_lose: bool = True,
) -> None:
    """Print both rows; every upload whole with the integration and (unless
    told otherwise) at least one cut against the server's own close."""
    with capsys.disabled():
        print(f"\n{label}: plain  {describe(plain)}")
        print(f"{label}: pysock {describe(ours)}")
    for name, (whole, total, errors) in ours.items():
        assert whole == total, f"{label} {name} with pysock: {whole}/{total}: {errors[:3]}"
    if plain_must_lose:
        whole, total = total_whole(plain)
        assert whole < total, f"{label}: the server's own close lost nothing: {describe(plain)}"


def check_never_reads(server: ServerProcess, label: str, **client_kw: int) -> None:
    """A client that uploads slowly and never reads is reset at the short
    policy's deadline; our response sat whole in its receive queue; the
    server serves meanwhile."""
    client = NeverReads(server.port, **client_kw)
    try:
        assert client.response_arrived(), "no 413 arrived\n" + server.output()
        assert client.ended.wait(20), "the lingering close never ended"
        assert client.end_time is not None
        assert client.end_time - client.started < 15  # the 2 s deadline, generously
        assert isinstance(client.error, (ConnectionResetError, BrokenPipeError)), client.error
        assert keepalive_gets(server.port, 1) == [(200, b"ok\n")]
    finally:
        client.close()
    assert f"pysock-log: {label}: abortive/timeout" in server.output(), server.output()


def check_sigterm_in_flight(server: ServerProcess, label: str, **client_kw: int) -> None:
    """SIGTERM while a lingering close (3 s deadline) is in flight (the
    client read its response and saw the FIN, and goes on uploading): the
    server exits by itself (no SIGKILL) soon after the deadline, having let
    the close end by its deadline."""
    client = NeverReads(server.port, **client_kw)
    try:
        status, _body = client.read_until_fin()
        assert status == 413
        assert not client.ended.is_set()
        took = server.stop(timeout=20)
        out = server.output()
        assert server.proc.returncode == 0, out
        assert took < 12, took  # the 3 s deadline and the server's own stop, generously
        assert f"pysock-log: {label}: abortive/timeout" in out, out
        assert client.ended.wait(5)
    finally:
        client.close()
        server.stop()


def check_mid_upload_disconnect(server: ServerProcess) -> None:
    disconnect_mid_upload(server.port)
    disconnect_mid_upload(server.port, reset=True)
    whole, total, errors = run_cell("httpx", server.url, 3)
    assert whole == total, errors
    assert keepalive_gets(server.port, 1) == [(200, b"ok\n")]
    # The server may log the client's reset its own way; nothing in pysock
    # may fail.
    out = server.output()
    assert "pysock/" not in out and "abortive/" not in out.replace(
        "abortive/not_connected", ""
    ).replace("abortive/reset", ""), out
