"""4. server: an HTTP/1.1-style thread-per-connection server that answers at
once (an early 413) without reading the request body, under uploading clients
in another process.

The closers, side by side: plain close() (the control: it truncates),
gunicorn's own ``gunicorn.util.close_graceful`` (as gunicorn's sync and gthread
workers call it: shutdown(SHUT_WR), recv(4096) until b"", 2 s or 64 KiB, then
close; skipped when gunicorn is not installed), a Python recv-loop lingering
close (shutdown(SHUT_WR), recv_into 64 KiB until b"", the 5 s deadline or 2 s
idle, then close) and pysock.close(conn, Drain(timeout=5, idle=2))."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import pysock

from ..common import (
    LOCAL,
    Config,
    KiB,
    Progress,
    Worker,
    cpu,
    median,
    ratios,
    rotated,
    serve,
    target,
)

__all__ = [
    "ALTERNATIVES",
    "COLUMNS",
    "CONTROL",
    "PYSOCK",
    "RESPONSE_SIZES",
    "TITLE",
    "ServerSample",
    "client_worker",
    "closers",
    "http_response",
    "run",
    "run_one",
]

TITLE = "4. Server shape: early 413 without reading the request body"
COLUMNS = (
    "closer",
    "response",
    "requests",
    "complete",
    "truncated",
    "resets",
    "clean",
    "req_per_s",
    "complete_per_s",
    "clean_per_s",
    "server_cpu_us_per_req",
    "server_cpu_us_per_clean",
    "server_errors",
)

# A small error page, and one larger than the client's initial receive window
# (so part of it is still in the server's send buffer when it closes).
RESPONSE_SIZES = (16 * KiB, 256 * KiB)


def http_response(body: int) -> bytes:
    return (
        b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {body}\r\nConnection: close\r\n\r\n".encode()
        + b"x" * body
    )


DRAIN_TIMEOUT = 5.0
DRAIN_IDLE = 2.0
SERVER_DRAIN = pysock.Drain(timeout=DRAIN_TIMEOUT, idle=DRAIN_IDLE)

CONTROL = "plain close"
GUNICORN = "gunicorn close_graceful"
RECV_LOOP = "python recv-loop"
PYSOCK = "pysock Drain"
ALTERNATIVES = (GUNICORN, RECV_LOOP)

Close = Callable[[socket.socket], None]


def _close_plain(sock: socket.socket) -> None:
    sock.close()


def _close_drain(sock: socket.socket) -> None:
    pysock.close(sock, SERVER_DRAIN)


_tls = threading.local()


def _close_recv_loop(sock: socket.socket) -> None:
    """A Python lingering close with Drain(timeout=5, idle=2)'s timers:
    shutdown(SHUT_WR), recv_into until b"", the deadline or the idle timer,
    then close."""
    buf = getattr(_tls, "buf", None)
    if buf is None:
        buf = _tls.buf = bytearray(64 * KiB)
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(min(left, DRAIN_IDLE))
            if not sock.recv_into(buf):
                break
    except OSError:  # TimeoutError included
        pass
    finally:
        sock.close()


def _gunicorn_close() -> Close | None:
    try:
        from gunicorn.util import close_graceful
    except ImportError:
        return None
    fn: Close = close_graceful
    return fn


def closers() -> dict[str, Close | None]:
    """Every closer by name; None where it is not available here (gunicorn
    not installed): its row says skipped."""
    return {
        CONTROL: _close_plain,
        GUNICORN: _gunicorn_close(),
        RECV_LOOP: _close_recv_loop,
        PYSOCK: _close_drain,
    }


# --------------------------------------------------------------------------
# the clients (another process)


def _client_handle(message: tuple[Any, ...]) -> tuple[Any, ...]:
    _, port, nclients, seconds, body, response_len = message
    request = (
        f"POST /upload HTTP/1.1\r\nHost: {LOCAL}\r\nContent-Length: {body}\r\n\r\n".encode()
        + b"b" * body
    )
    totals: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        mine: Counter[str] = Counter()
        buf = bytearray(64 * KiB)
        while time.monotonic() < end:
            mine["requests"] += 1
            try:
                s = socket.create_connection((LOCAL, port), timeout=10)
            except OSError:
                mine["connect_errors"] += 1
                continue
            got, reset = 0, False
            with s:
                try:
                    s.sendall(request)
                except (ConnectionResetError, BrokenPipeError):
                    reset = True
                    mine["reset_while_sending"] += 1
                except OSError:
                    mine["other_errors"] += 1
                try:
                    while True:
                        n = s.recv_into(buf)
                        if not n:
                            break
                        got += n
                except ConnectionResetError:
                    reset = True
                    mine["reset_while_reading"] += 1
                except OSError:
                    mine["other_errors"] += 1
            mine["complete" if got == response_len else "truncated"] += 1
            mine["resets"] += reset
            mine["clean"] += got == response_len and not reset
        with lock:
            totals.update(mine)

    c0, w0 = cpu(), time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return ("result", dict(totals), time.monotonic() - w0, cpu() - c0)


def _client_main(conn: Connection) -> None:
    serve(conn, _client_handle)


def client_worker() -> Worker:
    """A process running N HTTP-style clients that upload a body, then read."""
    return Worker(_client_main)


# --------------------------------------------------------------------------
# the server (this process)


class _Server:
    """Thread per connection; reads the request head only, answers at once."""

    def __init__(self, closer: Close, response: bytes) -> None:
        self.closer = closer
        self.response = response
        self.listener = socket.create_server((LOCAL, 0), backlog=1024)
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.handlers: list[threading.Thread] = []
        self.errors = 0
        self.served = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self.handlers = [h for h in self.handlers if h.is_alive()]
            self.handlers.append(t)

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 64 * KiB:
                chunk = conn.recv(64 * KiB)
                if not chunk:
                    break
                head += chunk
            conn.sendall(self.response)
            self.closer(conn)
            self.served += 1
        except OSError:
            self.errors += 1
        finally:
            if conn.fileno() != -1:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
        for h in self.handlers:
            h.join(10)


@dataclass
class ServerSample:
    closer: str
    response: int  # response body bytes
    requests: int
    complete: int
    truncated: int
    resets: int
    clean: int  # complete, and the client saw no reset at all
    wall: float
    server_cpu: float
    client_cpu: float
    server_errors: int
    counts: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    @property
    def cps(self) -> float:
        return self.complete / self.wall

    @property
    def clean_ps(self) -> float:
        return self.clean / self.wall

    @property
    def cpu_per_request(self) -> float:
        return self.server_cpu / self.requests if self.requests else float("nan")


def run_one(
    clients: Worker, closer: str, nclients: int, seconds: float, body: int, response: int
) -> ServerSample:
    """``nclients`` clients upload ``body`` bytes for ``seconds``; the server
    answers 413 (``response`` body bytes) at once, never reads the upload, and
    closes with ``closer``."""
    fn = closers()[closer]
    if fn is None:
        raise LookupError(f"{closer} is not available here")
    payload = http_response(response)
    server = _Server(fn, payload)
    try:
        c0 = cpu()
        _, counts, wall, client_cpu = clients.call(
            ("run", server.port, nclients, seconds, body, len(payload)), seconds + 60
        )
    finally:
        server.close()  # joins the handlers: their lingering closes are counted
    return ServerSample(
        closer,
        response,
        counts.get("requests", 0),
        counts.get("complete", 0),
        counts.get("truncated", 0),
        counts.get("resets", 0),
        counts.get("clean", 0),
        wall,
        cpu() - c0,
        client_cpu,
        server.errors,
        counts,
    )


def _best(
    samples: dict[tuple[str, int], list[ServerSample]],
    names: list[str],
    size: int,
    key: Callable[[ServerSample], float],
    lowest: bool,
) -> str:
    """The alternative with the best median of ``key`` at ``size``."""
    scored = [(median([key(s) for s in samples[(n, size)]]), n) for n in names]
    return (min(scored) if lowest else max(scored))[1]


def run(cfg: Config, say: Progress) -> dict[str, Any]:
    available = closers()
    names = [n for n, fn in available.items() if fn is not None]
    skipped = [n for n, fn in available.items() if fn is None]
    for n in skipped:
        say(f"server: {n} skipped (gunicorn is not installed)")
    samples: dict[tuple[str, int], list[ServerSample]] = {
        (n, size): [] for size in RESPONSE_SIZES for n in names
    }
    with client_worker() as clients:
        for r in range(cfg.server_rounds):
            for size in RESPONSE_SIZES:
                for name in rotated(names, r):
                    s = run_one(
                        clients, name, cfg.server_clients, cfg.server_seconds, cfg.server_body, size
                    )
                    samples[(name, size)].append(s)
                    say(
                        f"server round {r + 1}/{cfg.server_rounds} {name}, "
                        f"{size // KiB} KiB response: {s.rps:.0f} req/s, "
                        f"{s.truncated}/{s.requests} truncated, {s.resets} resets, "
                        f"{s.cpu_per_request * 1e6:.0f} us CPU/req"
                    )
    rows: list[dict[str, Any]] = []
    for size in RESPONSE_SIZES:
        for name in available:
            if name in skipped:
                rows.append(
                    {"closer": name, "response": f"{size // KiB} KiB", "requests": "skipped"}
                )
                continue
            ss = samples[(name, size)]
            rows.append(
                {
                    "closer": name,
                    "response": f"{size // KiB} KiB",
                    "requests": sum(s.requests for s in ss),
                    "complete": sum(s.complete for s in ss),
                    "truncated": sum(s.truncated for s in ss),
                    "resets": sum(s.resets for s in ss),
                    "clean": sum(s.clean for s in ss),
                    "req_per_s": median([s.rps for s in ss]),
                    "complete_per_s": median([s.cps for s in ss]),
                    "clean_per_s": median([s.clean_ps for s in ss]),
                    "server_cpu_us_per_req": median(
                        [s.server_cpu / s.requests * 1e6 for s in ss if s.requests]
                    ),
                    "server_cpu_us_per_complete": median(
                        [s.server_cpu / s.complete * 1e6 for s in ss if s.complete]
                    ),
                    "server_cpu_us_per_clean": median(
                        [s.server_cpu / s.clean * 1e6 for s in ss if s.clean]
                    ),
                    "server_errors": sum(s.server_errors for s in ss),
                }
            )
    alternatives = [n for n in ALTERNATIVES if n in names]
    found: dict[str, float] = {}
    targets: list[dict[str, Any]] = []
    truncated = sum(s.truncated for size in RESPONSE_SIZES for s in samples[(PYSOCK, size)])
    targets.append(target("server", "truncated responses with pysock Drain", float(truncated), 0.0))
    for size in RESPONSE_SIZES:
        kib = f"{size // KiB} KiB"
        mine = samples[(PYSOCK, size)]
        for alt in alternatives:
            theirs = samples[(alt, size)]
            found[f"pysock / {alt}, req/s ({kib})"] = ratios(
                [s.rps for s in mine], [s.rps for s in theirs]
            )
            found[f"pysock / {alt}, complete/s ({kib})"] = ratios(
                [s.cps for s in mine], [s.cps for s in theirs]
            )
            found[f"pysock / {alt}, clean/s ({kib})"] = ratios(
                [s.clean_ps for s in mine], [s.clean_ps for s in theirs]
            )
            found[f"pysock / {alt}, server CPU per request ({kib})"] = ratios(
                [s.cpu_per_request for s in mine], [s.cpu_per_request for s in theirs]
            )
            if all(s.clean for s in theirs):
                found[f"pysock / {alt}, server CPU per clean response ({kib})"] = ratios(
                    [s.server_cpu / max(s.clean, 1) for s in mine],
                    [s.server_cpu / s.clean for s in theirs],
                )
        plain = samples[(CONTROL, size)]
        found[f"pysock / plain close (control), req/s ({kib})"] = ratios(
            [s.rps for s in mine], [s.rps for s in plain]
        )
        if not alternatives:
            continue
        fastest = _best(samples, alternatives, size, lambda s: s.rps, lowest=False)
        cheapest = _best(samples, alternatives, size, lambda s: s.cpu_per_request, lowest=True)
        cleanest = _best(samples, alternatives, size, lambda s: s.clean_ps, lowest=False)
        targets.append(
            target(
                "server",
                f"pysock req/s / best alternative's ({fastest}, {kib} response)",
                found[f"pysock / {fastest}, req/s ({kib})"],
                1.0,
                ">=",
            )
        )
        targets.append(
            target(
                "server",
                f"pysock server CPU per request / best alternative's ({cheapest}, {kib})",
                found[f"pysock / {cheapest}, server CPU per request ({kib})"],
                0.5,
                "<=",
            )
        )
        targets.append(
            target(
                "server",
                f"pysock clean responses/s / best alternative's ({cleanest}, {kib}; "
                "clean: whole, no reset seen)",
                found[f"pysock / {cleanest}, clean/s ({kib})"],
                1.0,
                ">=",
            )
        )
    if not alternatives:
        targets.append(target("server", "pysock vs the best alternative", float("nan"), 1.0, ">="))
    return {
        "rows": rows,
        "ratios": found,
        "targets": targets,
        "skipped": skipped,
        "samples": [asdict(s) for v in samples.values() for s in v],
    }
