"""``python -m pysock demo``: every policy, live over loopback, on this OS.

Each row is one connection.  A client sends a request with a body the server
never reads (like an early 413 or 401), the server writes a response and
closes by the row's policy, and the client reads until EOF or reset.  The
first row is the classic trap: plain ``socket.close()`` with unread input,
which makes Linux and Windows send RST, so the client loses the response.

A client that is still busy uploading reads the response only after the
server has closed: the rows that close at once are shown that way, so the
trap's loss does not depend on which thread runs first.  The server then
queues what the kernel takes without blocking (``sent``).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pysock

REQUEST_BODY = 256 * 1024
RESPONSE = 1024 * 1024
STALLED_RESPONSE = 8 * 1024 * 1024
CLIENT_TIMEOUT = 5.0

Closer = Callable[[socket.socket], "pysock.CloseResult | None"]


@dataclass
class Row:
    policy: str
    took: float
    received: int
    sent: int
    peer_saw: str
    result: str


def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=CLIENT_TIMEOUT)
        server, _ = listener.accept()
    return server, client


def _read_all(client: socket.socket) -> tuple[int, str]:
    received = 0
    try:
        while True:
            data = client.recv(65536)
            if not data:
                return received, "EOF"
            received += len(data)
    except ConnectionResetError:
        return received, "reset (ECONNRESET)"
    except TimeoutError:
        return received, "nothing (timed out)"
    except OSError as exc:
        return received, errno.errorcode.get(exc.errno or 0, str(exc))


def _send_until_full(server: socket.socket, limit: int) -> int:
    """Queue as much as the kernel takes without blocking, up to limit."""
    server.setblocking(False)
    sent = 0
    chunk = b"r" * 65536
    with contextlib.suppress(BlockingIOError):
        while sent < limit:
            sent += server.send(chunk)
    server.setblocking(True)
    return sent


def run_case(name: str, closer: Closer, *, busy: bool = False, limit: int = RESPONSE) -> Row:
    """One connection closed by ``closer``, seen from the client's side.

    ``busy``: the client reads only after the close returned (it is still
    uploading, or stalled); the server queues at most ``limit`` bytes."""
    server, client = _pair()
    started = threading.Event()
    outcome: dict[str, object] = {}

    def serve() -> None:
        server.recv(1024)  # the request line: the body stays unread
        if busy:
            outcome["sent"] = _send_until_full(server, limit)
        else:
            server.sendall(b"r" * RESPONSE)
            outcome["sent"] = RESPONSE
        started.set()
        t0 = time.monotonic()
        result = closer(server)
        outcome["took"] = time.monotonic() - t0
        outcome["result"] = result

    try:
        client.sendall(b"POST /upload HTTP/1.1\r\n\r\n" + b"b" * REQUEST_BODY)
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started.wait(CLIENT_TIMEOUT)
        if busy:
            thread.join(CLIENT_TIMEOUT)  # a busy peer reads only afterwards
        received, peer_saw = _read_all(client)
        client.close()  # as an HTTP client does once it has the response
        thread.join(CLIENT_TIMEOUT)
    finally:
        client.close()
        if server.fileno() != -1:
            server.close()
    result = outcome.get("result")
    if isinstance(result, pysock.CloseResult):
        shown = f"{result.how}/{result.reason}"
        if result.drained:
            shown += f", drained {result.drained // 1024} KiB"
    else:
        shown = "(nothing to tell)"
    took = outcome.get("took")
    sent = outcome.get("sent")
    return Row(
        policy=name,
        took=took if isinstance(took, float) else float("nan"),
        received=received,
        sent=sent if isinstance(sent, int) else 0,
        peer_saw=peer_saw,
        result=shown,
    )


def _plain_close(sock: socket.socket) -> None:
    sock.close()


def cases() -> list[tuple[str, Closer, bool, int]]:
    """(name, closer, busy, limit) for each row."""
    return [
        ("socket.close()  [the trap]", _plain_close, True, RESPONSE),
        ("pysock Graceful()", lambda s: pysock.close(s, pysock.Graceful()), True, RESPONSE),
        ("pysock Abortive()", lambda s: pysock.close(s, pysock.Abortive()), True, RESPONSE),
        ("pysock Linger(1.0)", lambda s: pysock.close(s, pysock.Linger(1.0)), False, RESPONSE),
        (
            "pysock Drain(5.0)  [the cure]",
            lambda s: pysock.close(s, pysock.Drain(5.0)),
            False,
            RESPONSE,
        ),
        (
            "pysock Linger(0.5), peer stalled",
            lambda s: pysock.close(s, pysock.Linger(0.5)),
            True,
            STALLED_RESPONSE,
        ),
        (
            "pysock Drain(0.5), peer stalled",
            lambda s: pysock.close(s, pysock.Drain(0.5, idle=None)),
            True,
            STALLED_RESPONSE,
        ),
    ]


def _format(rows: list[Row]) -> str:
    head = ("policy", "close took", "peer received", "peer saw", "pysock how/reason")
    body = [
        (
            r.policy,
            f"{r.took * 1000:.1f} ms",
            f"{r.received // 1024} / {r.sent // 1024} KiB",
            r.peer_saw,
            r.result,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
        for line in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    print(
        f"pysock demo on {sys.platform}: a client sends a request with a "
        f"{REQUEST_BODY // 1024} KiB body\nthe server never reads, gets a "
        f"{RESPONSE // 1024} KiB response, and the server closes by each policy.\n",
        flush=True,
    )
    rows = []
    for name, closer, busy, limit in cases():
        rows.append(run_case(name, closer, busy=busy, limit=limit))
    print(_format(rows))
    trap, cure = rows[0], rows[4]
    print(
        f"\nThe trap: plain close() with unread input lost "
        f"{(trap.sent - trap.received) // 1024} KiB of the response ({trap.peer_saw}).\n"
        f"The cure: Drain delivered {cure.received // 1024} KiB of {cure.sent // 1024} "
        f"KiB ({cure.peer_saw})."
    )
    return 0
