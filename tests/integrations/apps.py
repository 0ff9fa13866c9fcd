"""The test apps every integration test serves: an ASGI app and a WSGI app
that answer any POST with ``413`` and a ``PAGE``-byte body (256 KiB) WITHOUT
reading the request body (the early-response trap), and any other method
with a small ``200`` (for keep-alive tests).

A POST to ``/close...`` adds ``Connection: close`` to the 413 (ASGI only:
WSGI apps may not set hop-by-hop headers), as nginx does with its own 413:
a server that would otherwise read and discard the rest of the body (uvicorn)
then closes the connection at once.

A WebSocket (ASGI only) is accepted and echoes what it receives.

``GET /slow`` answers 200 after 0.5 s (a request in progress during a
graceful shutdown); ``GET /stream`` streams ``STREAM_CHUNKS`` chunks of
``STREAM_CHUNK`` bytes (a streaming response must pass through unchanged).

Run by uvicorn as ``uvicorn apps:asgi_app --app-dir tests/integrations``; by
WSGI servers as ``apps:wsgi_app``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

KiB = 1024
#: The 413's body: bigger than what loopback delivers before the close, so a
#: reset loses part of it.
PAGE = 256 * KiB
SMALL = b"ok\n"
STREAM_CHUNK = 16 * KiB
STREAM_CHUNKS = 8


def page(size: int = PAGE) -> bytes:
    """The 413 body: recognisable bytes, so a short or mixed-up body shows."""
    unit = b"413 request entity too large; pysock integration test page.\n"
    return (unit * (size // len(unit) + 1))[:size]


PAGE_BODY = page()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _headers(body: bytes, ctype: bytes = b"text/plain") -> list[tuple[bytes, bytes]]:
    return [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI 3: POST -> 413 + PAGE bytes, body never read; else 200 ``ok``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _echo(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope.get("path", "/")
    if scope["method"] == "POST":
        headers = _headers(PAGE_BODY)
        if path.startswith("/close"):
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": PAGE_BODY})
        return
    if path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        for _ in range(STREAM_CHUNKS):
            await send(
                {"type": "http.response.body", "body": b"s" * STREAM_CHUNK, "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        import asyncio

        await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": _headers(SMALL)})
    await send({"type": "http.response.body", "body": SMALL})


async def _echo(receive: Receive, send: Send) -> None:
    """WebSocket: accept, echo every text or bytes message, until disconnect."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        else:  # websocket.disconnect
            return


StartResponse = Callable[..., Any]


def wsgi_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """WSGI: POST -> 413 + PAGE bytes, wsgi.input never read; else 200 ``ok``."""
    path = environ.get("PATH_INFO", "/")
    if environ["REQUEST_METHOD"] == "POST":
        start_response(
            "413 Request Entity Too Large",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(PAGE_BODY)))],
        )
        return [PAGE_BODY]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"s" * STREAM_CHUNK for _ in range(STREAM_CHUNKS))
    if path == "/slow":
        time.sleep(0.5)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(SMALL)))])
    return [SMALL]
