"""What every server's integration test shares (on top of harness.py): how
each server is started (a :class:`Launcher`), the policies the tests give
it, raw clients that misbehave, and the scenarios themselves.

Servers
-------
A :class:`Launcher` starts one server on a free port, ``launch(pysock,
env)``: with the server's own close when ``pysock`` is False (the control),
with pysock's integration when True, ``env`` added to the environment (the
policy: ``PYSOCK_DRAIN_*``).  :func:`launch_py` (the servers started from
Python, by launch.py), :func:`uvicorn` and :func:`gunicorn` (by their own
command lines) build them.  Every server logs each lingering close to its
output, one line each: ``pysock-log: <server>: <how>/<reason>, drained N
bytes in T s`` (:func:`closes` reads them back).

Policies
--------
:func:`policy` gives a drain policy whose ONLY limit a test can reach is
its deadline (``PYSOCK_DRAIN_TIMEOUT``): the idle limit is 30 s, longer
than any test waits, and there is no byte cap.  A test that asserts that a
lingering close ended "at the deadline" (``abortive/timeout``) then cannot
see it end by another limit instead, whatever the machine's load: with an
idle limit as short as the deadline (2 s both), a client stalled for 2 s
under load ends the close as ``abortive/idle`` at the same moment, and a
byte cap can end the close of a client that uploads fast (waitress's
burst) as ``abortive/max_bytes``.  The misbehaving clients below send a
little every 0.1 s (or 0.02 s), so no idle limit of a sane policy would
end them either.

``SHORT = policy(2)`` is the deadline tests' policy; the shutdown tests
use ``policy(3)`` and ``policy(6)``.  The disconnect test runs each server
under the policy its test always had: SHORT for the asyncio servers, the
default policy (no ``PYSOCK_DRAIN_*``) for the threaded ones.

The readiness probe
-------------------
``start_server`` knows a server is up when a connection to it succeeds: it
connects and closes without sending a byte.  The threaded servers'
integrations log that connection's close (``graceful/eof, drained 0
bytes``), the asyncio servers' do not (``Launcher.logs_probe``).  A test
that asserts the exact list of a server's closes waits for the probe's
close first (:func:`probe_closes`), so it is the first one logged, and
expects exactly it in front of the test's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping

import pytest

from .apps import PAGE, SMALL, STREAM_CHUNK, STREAM_CHUNKS
from .harness import (
    BODY,
    CLIENTS,
    HERE,
    LAUNCH,
    ServerProcess,
    free_port,
    keepalive_gets,
    read_response,
    run_cell,
    start_server,
)

ROOT = os.path.dirname(os.path.dirname(HERE))
MiB = 1024 * 1024
#: Uploads per cell (server x client x close).
N = 10


def policy(timeout: float) -> dict[str, str]:
    """The environment of a policy that ends a close only at its
    ``timeout`` within a test's time (see the module)."""
    return {
        "PYSOCK_DRAIN_TIMEOUT": f"{timeout:g}",
        "PYSOCK_DRAIN_IDLE": "30",
        "PYSOCK_DRAIN_MAX_BYTES": "none",
    }


#: The deadline tests' policy: a lingering close lasts 2 s at most.
SHORT = policy(2)


def need(module: str) -> None:
    """Skip (the test, or the module when called at import) unless
    ``module`` can be imported; with PYSOCK_REQUIRE_INTEGRATION=1, fail."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("PYSOCK_REQUIRE_INTEGRATION") == "1":
            raise RuntimeError(f"{module} is not installed (the test dependencies: see README)")
        pytest.skip(f"{module} is not installed", allow_module_level=True)


# -- servers -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Launcher:
    """Starts one server: ``argv(port, pysock)`` is its command line;
    ``name`` is what its integration calls it in the log; ``logs_probe``:
    its integration logs the close of start_server's readiness probe (see
    the module)."""

    name: str
    argv: Callable[[int, bool], list[str]]
    logs_probe: bool = False

    def __call__(
        self,
        pysock: bool = True,
        env: Mapping[str, str] | None = None,
        *,
        nofile: int | None = None,
    ) -> ServerProcess:
        port = free_port()
        return start_server(self.argv(port, pysock), port, env, cwd=ROOT, nofile=nofile)


#: launch.py's threaded servers: their integrations log the readiness probe's close.
THREADED = ("cheroot", "waitress", "socketserver")


def launch_py(server: str, *extra: str) -> Launcher:
    """``launch.py SERVER --port N --debug [--pysock] EXTRA...``."""

    def argv(port: int, pysock: bool) -> list[str]:
        args = [sys.executable, LAUNCH, server, "--port", str(port), "--debug", *extra]
        return [*args, "--pysock"] if pysock else args

    return Launcher(server, argv, logs_probe=server in THREADED)


#: uvicorn's --http: its own protocol -> pysock's.
UVICORN_HTTP = {
    "h11": "pysock.integrations.uvicorn:H11Protocol",
    "httptools": "pysock.integrations.uvicorn:HttpToolsProtocol",
}


def uvicorn(http: str = "h11", loop: str = "asyncio", *extra: str) -> Launcher:
    """``uvicorn apps:asgi_app --http HTTP`` (or pysock's protocol for it)."""

    def argv(port: int, pysock: bool) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "apps:asgi_app", "--app-dir", HERE,
            "--host", "127.0.0.1", "--port", str(port),
            "--http", UVICORN_HTTP[http] if pysock else http, "--loop", loop,
            "--log-config", os.path.join(HERE, "uvicorn_log.json"), "--no-access-log", *extra,
        ]  # fmt: skip

    return Launcher("uvicorn", argv)


#: gunicorn's -k: its own worker -> pysock's.
GUNICORN_WORKERS = {
    "sync": ("sync", "pysock.integrations.gunicorn.SyncWorker"),
    "gthread": ("gthread", "pysock.integrations.gunicorn.ThreadWorker"),
    "uvicorn": ("uvicorn_worker.UvicornWorker", "pysock.integrations.gunicorn.UvicornWorker"),
    "uvicorn-h11": (
        "uvicorn_worker.UvicornH11Worker",
        "pysock.integrations.gunicorn.UvicornH11Worker",
    ),
}


def gunicorn(kind: str, *extra: str) -> Launcher:
    """``gunicorn -c gunicorn_conf.py -k WORKER -w 1 apps:wsgi_app`` (the
    uvicorn workers: ``apps:asgi_app``; gthread: ``--threads 2``)."""
    plain, ours = GUNICORN_WORKERS[kind]
    app = "apps:asgi_app" if kind.startswith("uvicorn") else "apps:wsgi_app"
    threads = ["--threads", "2"] if kind == "gthread" else []

    def argv(port: int, pysock: bool) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "-c", os.path.join(HERE, "gunicorn_conf.py"),
            "-k", ours if pysock else plain, "-w", "1", "-b", f"127.0.0.1:{port}",
            "--chdir", HERE, *threads, *extra, app,
        ]  # fmt: skip

    # The sync and gthread workers are threaded; the uvicorn ones are asyncio.
    return Launcher("gunicorn", argv, logs_probe=not kind.startswith("uvicorn"))


_CLOSE = re.compile(r"pysock-log: (\w+): (graceful|abortive)/(\w+), drained (\d+) bytes")


def closes(output: str) -> list[tuple[str, str, str]]:
    """The (server, how, reason) of each lingering close the server logged."""
    found = []
    for line in output.splitlines():
        m = _CLOSE.search(line)
        if m:
            found.append((m.group(1), m.group(2), m.group(3)))
    return found


def probe_closes(
    launch: Launcher, server: ServerProcess, bound: float = 5.0
) -> list[tuple[str, str, str]]:
    """The readiness probe's close as :func:`closes` lists it, ``[]`` for a
    server whose integration does not log it (see the module).  For one
    that does, waits until it is logged (at most ``bound`` s), before the
    test's own connections, and checks that it is the one close logged so
    far, ``<server>: graceful/eof, drained 0 bytes``."""
    if not launch.logs_probe:
        return []
    end = time.monotonic() + bound
    while True:
        out = server.output()
        found = [m.group(1, 2, 3, 4) for m in map(_CLOSE.search, out.splitlines()) if m]
        if found or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert found == [(launch.name, "graceful", "eof", "0")], out
    return [(launch.name, "graceful", "eof")]


def _wait_for_close(server: ServerProcess, close: tuple[str, str, str], bound: float = 5.0) -> str:
    """The server's output, once it logged ``close`` (or ``bound`` s passed)."""
    end = time.monotonic() + bound
    while True:
        out = server.output()
        if close in closes(out) or time.monotonic() > end:
            return out
        time.sleep(0.05)


# -- clients -----------------------------------------------------------------


def request_head(path: str, length: int) -> bytes:
    """A POST's head announcing a ``length``-byte body."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def disconnect_mid_upload(
    port: int, path: str = "/", sent: int = MiB, reset: bool = False, *, send_error_ok: bool = True
) -> None:
    """Announce BODY bytes, send ``sent`` of them, then go away (FIN, or RST
    with ``reset``) without reading anything.  The body goes in 64 KiB
    chunks, and a send error ends the sending (the server answered and
    closed: fine); with ``send_error_ok=False`` the head and the ``sent``
    bytes go in one ``sendall`` whose error fails the test: the server must
    take them all (it drains, it never resets the connection)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if not send_error_ok:
            sock.sendall(request_head(path, BODY) + b"u" * sent)
        else:
            sock.sendall(request_head(path, BODY))
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
    """A client that uploads forever, 1 KiB every ``interval`` s (0.1 s: no
    idle limit ends it), and never reads its response.

    Its head announces ``length`` body bytes (BODY, 8 MiB: the upload goes
    on for minutes at these rates; ``1 << 40``: it could never end).
    ``rcvbuf`` is its receive buffer: the default is big enough for the
    whole response, so a threaded server's blocking write completes and the
    server goes on to close; a small one leaves most of the response
    undelivered.  ``burst`` bytes of the body go at once first.
    ``started`` is taken once connected, before the head is sent.
    ``ended`` is set when a send fails (the server reset the connection);
    ``response_arrived()`` peeks at the receive queue for the status line."""

    def __init__(
        self,
        port: int,
        path: str = "/",
        rcvbuf: int = 2 * MiB,
        burst: int = 0,
        *,
        interval: float = 0.1,
        length: int = BODY,
    ) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.started = time.monotonic()
        self.length = length
        self.sock.sendall(request_head(path, length))
        self.sent = 0
        if burst:
            self.sock.sendall(b"u" * burst)
            self.sent = burst
        self.interval = interval
        self.chunk = b"u" * 1024
        self.ended = threading.Event()
        self.end_time: float | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < self.length - len(self.chunk):
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


def pipelined_after_close(port: int, body: int = BODY) -> tuple[int | None, int, str | None]:
    """A request that ends the connection (``Connection: close``, no body),
    pipelined with a second request carrying ``body`` bytes that the server
    will never read, sent in full before the response is read (as httpx and
    requests do with one upload); the first response as received: (status,
    body bytes, error)."""
    first = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    second = request_head("/", body)
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


# -- scenarios ---------------------------------------------------------------

Cell = tuple[int, int, list[str]]  # (whole, total, what went wrong in the others)


@dataclasses.dataclass(frozen=True)
class Cells:
    """Every client's uploads against the server's own close and the
    integration's: {client: cell}; ``output`` is the integration's server's."""

    plain: dict[str, Cell]
    ours: dict[str, Cell]
    output: str


def _describe(cells: dict[str, Cell]) -> str:
    parts = []
    for name, (whole, total, errors) in cells.items():
        first = f" (e.g. {errors[0][:70]})" if errors else ""
        parts.append(f"{name} {whole}/{total}{first}")
    return ", ".join(parts)


def check_cells(
    label: str,
    launch: Launcher,
    capsys: pytest.CaptureFixture[str],
    path: str = "/",
    n: int = N,
    *,
    plain_must_lose: bool = True,
) -> Cells:
    """Every client, ``n`` uploads of 8 MiB each, against the server's own
    close and against the integration (a fresh server each); prints both
    rows.  With the integration every response is whole; the control (the
    server's own close) loses at least one in all its cells together,
    unless ``plain_must_lose`` is False (reported, not asserted)."""
    rows: dict[bool, dict[str, Cell]] = {}
    output = ""
    for pysock in (False, True):
        with launch(pysock) as server:
            rows[pysock] = {name: run_cell(name, server.url + path, n) for name in CLIENTS}
            output = server.output()
    plain, ours = rows[False], rows[True]
    with capsys.disabled():
        print(f"\n{label}: plain  {_describe(plain)}")
        print(f"{label}: pysock {_describe(ours)}")
    for name, (whole, total, errors) in ours.items():
        assert whole == total, f"{label} {name} with pysock: {whole}/{total}: {errors[:3]}"
    if plain_must_lose:
        whole = sum(w for w, _, _ in plain.values())
        total = sum(t for _, t, _ in plain.values())
        assert whole < total, f"{label}: the server's own close lost nothing: {_describe(plain)}"
    return Cells(plain, ours, output)


def keepalive(
    port: int, *, after_stream: bool = True, pipelined: bool = True
) -> list[tuple[int, bytes]]:
    """Several requests per connection: five GETs on one; on another, a
    streamed response, a second one, then (if ``pipelined``) two pipelined
    GETs (each on a new connection unless ``after_stream``: waitress ends the
    connection after a streamed response).  What was seen, in order."""
    seen = keepalive_gets(port, 5)
    requests = [
        (b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n", 1),
        (b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n", 1),
    ]
    if pipelined:
        requests.append((b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", 2))
    with contextlib.ExitStack() as stack:
        sock = None
        buf = bytearray()
        for raw, answers in requests:
            if sock is None or not after_stream:
                sock = stack.enter_context(
                    socket.create_connection(("127.0.0.1", port), timeout=10)
                )
                buf = bytearray()
            sock.sendall(raw)
            for _ in range(answers):
                status, _, body = read_response(sock, buf)
                seen.append((status, body))
    return seen


EXPECTED_KEEPALIVE = (
    [(200, SMALL)] * 5 + [(200, b"s" * STREAM_CHUNK * STREAM_CHUNKS)] * 2 + [(200, SMALL)] * 2
)


def check_keepalive(launch: Launcher, *, after_stream: bool = True, pipelined: bool = True) -> None:
    """Keep-alive, streaming and (unless the server cannot) pipelining: the
    same answers with the integration as with the server's own close, and
    the expected ones."""
    results = {}
    for pysock in (False, True):
        with launch(pysock) as server:
            results[pysock] = keepalive(server.port, after_stream=after_stream, pipelined=pipelined)
    expected = EXPECTED_KEEPALIVE if pipelined else EXPECTED_KEEPALIVE[:-2]
    assert results[True] == expected
    assert results[True] == results[False]


def check_websocket(launch: Launcher, path: str = "/") -> None:
    """A WebSocket echoes through the integration; HTTP is still served."""
    need("websockets")
    from websockets.sync.client import connect

    with launch(True) as server:
        with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
        assert run_cell("httpx", server.url + path, 1)[:2] == (1, 1)


def check_disconnect_mid_upload(
    launch: Launcher,
    path: str = "/",
    *,
    env: Mapping[str, str] | None = None,
    send_error_ok: bool = True,
    reset_traceback: bool = False,
) -> None:
    """Clients that vanish mid-upload (a FIN, a RST) leave the server
    serving: later uploads are whole, and no lingering close failed.
    Nothing raised in the server, unless ``reset_traceback``: the server
    reports a client's reset with a traceback of its own (http.server's
    handler writing to a reset connection), and none may pass through
    pysock.  ``env``: the policy (None: the default one);
    ``send_error_ok=False``: the clients' 1 MiB must go through, a send
    error fails the test (see :func:`disconnect_mid_upload`)."""
    with launch(True, env) as server:
        disconnect_mid_upload(server.port, path, send_error_ok=send_error_ok)
        disconnect_mid_upload(server.port, path, reset=True, send_error_ok=send_error_ok)
        whole, total, errors = run_cell("httpx", server.url + path, 3)
        assert (whole, total) == (3, 3), errors
        assert keepalive_gets(server.port, 1) == [(200, SMALL)]
        out = server.output()
    if not reset_traceback:
        assert "Traceback" not in out, out
    assert "pysock/" not in out and "abortive/" not in out.replace(
        "abortive/not_connected", ""
    ).replace("abortive/reset", ""), out


def check_never_reading_client(
    launch: Launcher,
    path: str = "/",
    *,
    rcvbuf: int = 2 * MiB,
    page: bytes | None = None,
    burst: int = 0,
    interval: float = 0.1,
    length: int = BODY,
) -> None:
    """A client that trickles its upload forever and never reads: the
    lingering close ends at the short policy's deadline (2 s) with a reset,
    logged as such, and it is the only close logged besides the readiness
    probe's (see the module); the server serves meanwhile.  ``page``: the
    response that sat whole in the client's receive queue before the reset
    (with the default ``rcvbuf``, which holds it).  ``rcvbuf``, ``burst``,
    ``interval``, ``length``: the client's (see :class:`NeverReads`)."""
    with launch(True, SHORT) as server:
        probe = probe_closes(launch, server)
        client = NeverReads(
            server.port, path, rcvbuf=rcvbuf, burst=burst, interval=interval, length=length
        )
        try:
            assert client.response_arrived(), "no 413 arrived\n" + server.output()
            assert client.ended.wait(20), "the lingering close outlived the 2 s deadline by 18 s"
            assert client.end_time is not None
            elapsed = client.end_time - client.started
            assert elapsed < 10, elapsed  # the 2 s deadline, generously
            assert isinstance(client.error, (ConnectionResetError, BrokenPipeError)), client.error
            if page is not None:
                assert client.read_response() == (413, page)
            deadline = (launch.name, "abortive", "timeout")
            out = _wait_for_close(server, deadline)
            assert closes(out) == [*probe, deadline], out
            assert keepalive_gets(server.port, 1) == [(200, SMALL)]
        finally:
            client.close()


def check_shutdown_waits_for_eof(launch: Launcher, path: str = "/", clients: int = 4) -> None:
    """SIGTERM while lingering closes are in flight: the server waits for
    them — the clients got their whole responses, the closes end by the
    clients' EOF (sent 1.5 s after the signal), not cut at exit — and exits
    by itself well within the policy's deadline (6 s)."""
    with launch(True, policy(6)) as server:
        socks = []
        try:
            for _ in range(clients):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                socks.append(sock)
                sock.sendall(request_head(path, BODY) + b"x" * (256 * 1024))
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
    assert closes(out) == [(launch.name, "graceful", "eof")] * clients, out


def check_shutdown_waits_for_deadline(launch: Launcher, *, burst: int = 0) -> None:
    """SIGTERM while a lingering close (3 s deadline) is in flight (the
    client read its response and saw the FIN, and goes on uploading): the
    server exits by itself (no SIGKILL) soon after the deadline, having let
    the close end by its deadline, not by the exit."""
    with launch(True, policy(3)) as server:
        client = NeverReads(server.port, burst=burst)
        try:
            status, _body = client.read_until_fin()
            assert status == 413
            assert not client.ended.is_set()
            took = server.stop(timeout=20)
            out = server.output()
            assert server.proc.returncode == 0, out
            assert took < 12, took  # the 3 s deadline and the server's own stop, generously
            assert f"pysock-log: {launch.name}: abortive/timeout" in out, out
            assert client.ended.wait(5)
        finally:
            client.close()
