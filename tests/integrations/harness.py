"""The shared end-to-end harness of the integration tests: a real server in
its own process, started the way its users start it, and real HTTP clients.

Servers
-------
``start_server(argv, port, env=None, *, cwd=None, timeout=20.0, nofile=None)``
    Starts ``argv`` (a command line: ``[sys.executable, "-m", "uvicorn", ...]``
    or ``[sys.executable, LAUNCH, "tornado", "--port", str(port)]``) as a
    subprocess, with ``env`` added to this process's environment, and waits
    until ``127.0.0.1:port`` accepts a connection (at most ``timeout``
    seconds).  If the process exits first or the bound passes, it is stopped
    and a :class:`ServerError` carries its exit status and stderr.  ``nofile``
    raises the child's RLIMIT_NOFILE soft limit (capped at the hard limit).
    Returns a :class:`ServerProcess`.
``ServerProcess``
    ``.pid``, ``.port``, ``.url`` (``http://127.0.0.1:PORT``), ``.output()``
    (stdout and stderr so far), ``.stop(timeout=10.0) -> float``: SIGTERM by
    pid, SIGKILL after ``timeout`` seconds, returns the seconds the process
    took to exit; ``.signal(signum)``; a context manager (stops on exit).
``free_port()``
    A TCP port on 127.0.0.1 that was free a moment ago.
``raise_nofile(n)``
    Raises this process's RLIMIT_NOFILE soft limit to ``n`` (at most the
    hard limit); returns the soft limit.
``LAUNCH``
    The path of ``launch.py``: the servers that are started from Python.

Clients
-------
``upload_httpx(url, body_size=BODY)``, ``upload_requests(url, body_size=BODY)``,
``upload_curl(url, body_size=BODY)``
    One POST on a new connection with a ``body_size``-byte body sent with
    Content-Length (not chunked; curl with ``-H 'Expect:'``, so no
    ``100-continue``), then the response read to its end.  Each returns an
    :class:`Upload`: ``status`` (None if no status line arrived),
    ``received`` (body bytes received), ``expected`` (the response's
    Content-Length, None if absent), ``whole`` (a status line arrived, the
    body length equals Content-Length and no error was raised while
    reading) and ``error`` (the client's error text: httpx
    ``ReadError``/``RemoteProtocolError``, requests
    ``ConnectionError``/``ChunkedEncodingError``, ``curl exit 56: ...``).
    Bounded in time (``CLIENT_TIMEOUT`` per read, ``CURL_MAX_TIME`` in all
    for curl).
``CLIENTS``
    ``{"httpx": upload_httpx, "requests": upload_requests, "curl": upload_curl}``.
``run_cell(client, url, n=10, body_size=BODY) -> (whole, total, errors)``
    ``n`` sequential uploads; ``errors`` is the list of error texts (and
    statuses other than 413) of the ones that were not whole.

Raw sockets
-----------
``keepalive_gets(port, n, path="/")``
    ``n`` GETs one after the other on ONE connection; returns the statuses
    and bodies (raises if the server closed the connection in between).
``read_response(sock)``
    One HTTP/1.1 response with a Content-Length or chunked body:
    ``(status, headers, body)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import IO

__all__ = [
    "BODY",
    "CLIENTS",
    "CLIENT_TIMEOUT",
    "CURL",
    "CURL_MAX_TIME",
    "HERE",
    "LAUNCH",
    "ServerError",
    "ServerProcess",
    "Upload",
    "free_port",
    "keepalive_gets",
    "raise_nofile",
    "read_response",
    "run_cell",
    "start_server",
    "upload_curl",
    "upload_httpx",
    "upload_requests",
]

MiB = 1024 * 1024
#: The upload every cell sends: 8 MiB.
BODY = 8 * MiB
#: Per read / connect, for httpx and requests.
CLIENT_TIMEOUT = 15.0
#: curl's --max-time.
CURL_MAX_TIME = 30
HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH = os.path.join(HERE, "launch.py")
CURL = shutil.which("curl")


# -- servers -----------------------------------------------------------------


class ServerError(RuntimeError):
    """The server process died or did not start accepting in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log

    def output(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM, then SIGKILL after ``timeout`` s; the seconds it took to exit."""
        start = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        return time.monotonic() - start

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()


def raise_nofile(n: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to ``n`` (capped at the
    hard limit, never lowered); the soft limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_server(
    argv: Sequence[str],
    port: int,
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | None = None,
    timeout: float = 20.0,
    nofile: int | None = None,
) -> ServerProcess:
    """Start ``argv`` and wait until 127.0.0.1:``port`` accepts (see the module)."""
    full_env = dict(os.environ)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    log = tempfile.TemporaryFile()  # noqa: SIM115 (owned by the ServerProcess)
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd,
        preexec_fn=functools.partial(raise_nofile, nofile) if nofile else None,
    )
    server = ServerProcess(proc, port, log)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise ServerError(
                    f"{' '.join(argv)} exited with {proc.returncode} before accepting on "
                    f"port {port}:\n{server.output()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    return server
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"{' '.join(argv)} did not accept on port {port} within {timeout} s:\n"
                    f"{server.output()}"
                )
            time.sleep(0.05)
    except BaseException:
        server.stop()
        log.close()
        raise


# -- clients -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Upload:
    """What one client saw of one upload."""

    client: str
    status: int | None
    received: int
    expected: int | None
    error: str | None

    @property
    def whole(self) -> bool:
        return (
            self.status is not None
            and self.error is None
            and self.expected is not None
            and self.received == self.expected
        )

    def describe(self) -> str:
        if self.whole:
            return f"{self.status} whole ({self.received} bytes)"
        return f"status {self.status}, {self.received}/{self.expected} bytes" + (
            f", {self.error}" if self.error else ""
        )


@functools.lru_cache(maxsize=4)
def _body(size: int) -> bytes:
    return b"u" * size


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def upload_httpx(url: str, body_size: int = BODY) -> Upload:
    import httpx

    status: int | None = None
    expected: int | None = None
    received = 0
    error: str | None = None
    timeout = httpx.Timeout(CLIENT_TIMEOUT)
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream(
                "POST",
                url,
                content=_body(body_size),
                headers={"content-type": "application/octet-stream"},
            ) as response,
        ):
            status = response.status_code
            expected = _content_length(response.headers.get("content-length"))
            for chunk in response.iter_raw():
                received += len(chunk)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Upload("httpx", status, received, expected, error)


def upload_requests(url: str, body_size: int = BODY) -> Upload:
    import requests

    status: int | None = None
    expected: int | None = None
    received = 0
    error: str | None = None
    try:
        with (
            requests.Session() as session,
            session.post(
                url,
                data=_body(body_size),
                headers={"Content-Type": "application/octet-stream"},
                stream=True,
                timeout=(CLIENT_TIMEOUT, CLIENT_TIMEOUT),
            ) as response,
        ):
            status = response.status_code
            expected = _content_length(response.headers.get("Content-Length"))
            for chunk in response.iter_content(64 * 1024):
                received += len(chunk)
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Upload("requests", status, received, expected, error)


@functools.lru_cache(maxsize=4)
def _body_file(size: int) -> str:
    fd, path = tempfile.mkstemp(prefix="pysock-upload-", suffix=".bin")
    with os.fdopen(fd, "wb") as f:
        f.write(_body(size))
    import atexit

    atexit.register(os.unlink, path)
    return path


# curl is not ours to sanitize: a sanitizer runtime preloaded into the test
# run (CI's ASan step) is kept out of it.
_CURL_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def upload_curl(url: str, body_size: int = BODY) -> Upload:
    if CURL is None:
        if os.environ.get("PYSOCK_REQUIRE_INTEGRATION") != "1":
            import pytest

            pytest.skip("curl is not installed (apt-get install curl)")
        raise RuntimeError("curl is not installed (apt-get install curl)")
    with tempfile.TemporaryDirectory(prefix="pysock-curl-") as tmp:
        head = os.path.join(tmp, "head")
        body = os.path.join(tmp, "body")
        proc = subprocess.run(
            [
                CURL,
                "--silent",
                "--show-error",
                "--http1.1",
                "--max-time",
                str(CURL_MAX_TIME),
                "-H",
                "Expect:",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                "@" + _body_file(body_size),
                "-D",
                head,
                "-o",
                body,
                url,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CURL_MAX_TIME + 10,
            env=_CURL_ENV,
        )
        status: int | None = None
        expected: int | None = None
        with contextlib.suppress(FileNotFoundError), open(head, "rb") as f:
            for line in f.read().decode("latin-1").splitlines():
                if line.startswith("HTTP/"):
                    parts = line.split()
                    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
                    expected = None  # the last response's headers count (1xx)
                elif line.lower().startswith("content-length:"):
                    expected = _content_length(line.split(":", 1)[1].strip())
        try:
            received = os.path.getsize(body)
        except FileNotFoundError:
            received = 0
    error = None
    if proc.returncode != 0:
        error = f"curl exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}"
    return Upload("curl", status, received, expected, error)


Client = Callable[..., Upload]
CLIENTS: dict[str, Client] = {
    "httpx": upload_httpx,
    "requests": upload_requests,
    "curl": upload_curl,
}


def run_cell(
    client: Client | str, url: str, n: int = 10, body_size: int = BODY
) -> tuple[int, int, list[str]]:
    """``n`` sequential uploads: (whole, n, what went wrong in the others).

    A whole response that is not the 413 also counts as wrong."""
    upload = CLIENTS[client] if isinstance(client, str) else client
    whole = 0
    errors: list[str] = []
    for _ in range(n):
        result = upload(url, body_size)
        if result.whole and result.status == 413:
            whole += 1
        else:
            errors.append(result.describe())
    return whole, n, errors


# -- raw sockets -------------------------------------------------------------


def _read_until(sock: socket.socket, buf: bytearray, marker: bytes) -> int:
    while True:
        at = buf.find(marker)
        if at >= 0:
            return at
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"EOF before {marker!r} ({len(buf)} bytes buffered)")
        buf += data


def _read_exactly(sock: socket.socket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"EOF after {len(buf)} of {n} body bytes")
        buf += data
    out = bytes(buf[:n])
    del buf[:n]
    return out


def read_response(
    sock: socket.socket, buf: bytearray | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One response (Content-Length or chunked body) from ``sock``; ``buf``
    holds bytes read past it, for the next call on the same connection."""
    if buf is None:
        buf = bytearray()
    end = _read_until(sock, buf, b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1")
    del buf[: end + 4]
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, headers, _read_exactly(sock, buf, int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            at = _read_until(sock, buf, b"\r\n")
            size = int(bytes(buf[:at]).split(b";")[0], 16)
            del buf[: at + 2]
            if size == 0:
                _read_until(sock, buf, b"\r\n")  # no trailers expected
                at = buf.find(b"\r\n")
                del buf[: at + 2]
                return status, headers, bytes(body)
            body += _read_exactly(sock, buf, size + 2)[:-2]
    raise ValueError(f"response without a length: {head!r}")


def keepalive_gets(
    port: int, n: int, path: str = "/", timeout: float = 10.0
) -> list[tuple[int, bytes]]:
    """``n`` GETs in turn on one connection: [(status, body), ...]."""
    out: list[tuple[int, bytes]] = []
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for _ in range(n):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            status, _headers, body = read_response(sock, buf)
            out.append((status, body))
    return out


if __name__ == "__main__":  # python harness.py URL: one cell per client
    target = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    for name in CLIENTS:
        w, t, errs = run_cell(name, target, count)
        print(f"{name}: {w}/{t}", *sorted(set(errs))[:3], sep="\n  ")
