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

from integrations.harness import BODY, CLIENTS, read_response, run_cell

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

    def __init__(self, port: int, interval: float = 0.1, chunk: int = 1024) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * 1024 * 1024)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(_request_head("/", BODY))
        self.interval = interval
        self.chunk = b"u" * chunk
        self.started = time.monotonic()
        self.ended = threading.Event()
        self.end_time: float | None = None
        self.error: BaseException | None = None
        self.sent = 0
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
            if data.startswith(b"HTTP/1.1 413"):
                return True
            time.sleep(0.02)
        return False

    def read_response(self) -> tuple[int, bytes]:
        """After the end: the response as it sits in the receive queue."""
        self.sock.settimeout(5)
        status, _headers, body = read_response(self.sock)
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
