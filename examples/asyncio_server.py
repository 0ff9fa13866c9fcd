"""An asyncio HTTP/1.1 server that rejects large uploads early — and the
lingering close that makes the rejection reach the client.

    python examples/asyncio_server.py [--port 8080] [--close plain|pysock]
                                      [--loop asyncio|uvloop] [--max-body 65536]

A request whose Content-Length exceeds --max-body gets ``413 Payload Too
Large`` at once, without its body being read, and the connection is closed:

* ``--close plain``: ``transport.close()``, what asyncio servers do.  The
  client is still sending its body, so the close (unread input) or the
  client's next segment makes the server's kernel send RST: the part of the
  413 not yet delivered is thrown away (and on Windows, what the client had
  received but not read): the client sees "connection reset by peer" and a
  truncated response or none.
* ``--close pysock``: ``await pysock.aio.close_transport(transport,
  pysock.Drain(...))``: shut down our sending side (the client gets the 413
  and EOF), read and discard the rest of the body off the event loop, close
  when the client closes.  Every client gets its response whole.

The parser is minimal (request line, headers, Content-Length; one request
per connection) — enough to show the close, not a production server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import pysock
import pysock.aio

MAX_HEAD = 16 * 1024
BODY_413 = b"Payload Too Large: this server accepts bodies up to %d bytes.\n"


def response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HttpProtocol(asyncio.Protocol):
    def __init__(self, close_mode: str, max_body: int, policy: pysock.Policy, page: bytes) -> None:
        self.page = page
        self.close_mode = close_mode
        self.max_body = max_body
        self.policy = policy
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.body_left = -1  # -1: still reading the head
        self.body_seen = 0
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done:
            return  # answered: the rest is the close's business
        if self.body_left >= 0:
            self._body(len(data))
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._answer(response("431 Request Header Fields Too Large", b""))
            return
        head, rest = bytes(self.buffer[:end]), len(self.buffer) - end - 4
        self.buffer.clear()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._answer(response("400 Bad Request", b"bad Content-Length\n"))
                    return
        if length > self.max_body:
            # Early rejection: the body is never read.
            self._answer(response("413 Payload Too Large", self.page))
            return
        self.body_left = length
        self._body(rest)

    def _body(self, n: int) -> None:
        self.body_seen += n
        self.body_left -= n
        if self.body_left <= 0:
            self._answer(response("200 OK", b"received %d bytes\n" % self.body_seen))

    def _answer(self, payload: bytes) -> None:
        self.done = True
        assert self.transport is not None
        self.transport.write(payload)
        if self.close_mode == "plain":
            self.transport.close()
        else:
            task = asyncio.ensure_future(self._close(self.transport))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    async def _close(self, transport: asyncio.Transport) -> None:
        with contextlib.suppress(pysock.NotConnectedError):  # the client went away
            await pysock.aio.close_transport(transport, self.policy)


_tasks: set[asyncio.Task[None]] = set()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    close_mode: str = "pysock",
    max_body: int = 64 * 1024,
    policy: pysock.Policy | None = None,
    page_size: int = 0,
) -> asyncio.Server:
    """Start the server on the running loop; returns the asyncio.Server."""
    if close_mode not in ("plain", "pysock"):
        raise ValueError(f"close_mode must be 'plain' or 'pysock', not {close_mode!r}")
    drain = policy or pysock.Drain(timeout=10, idle=5)
    page = error_page(max_body, page_size)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpProtocol(close_mode, max_body, drain, page), host, port, backlog=1024
    )


def error_page(max_body: int, size: int = 0) -> bytes:
    """The 413 body: one line, padded with '.' lines to `size` bytes (a
    server's HTML error page is often some KiB)."""
    text = BODY_413 % max_body
    pad = max(0, size - len(text))
    return text + (b"." * 63 + b"\n") * (pad // 64) + b"." * (pad % 64)


async def _main(args: argparse.Namespace) -> None:
    server = await serve(args.host, args.port, args.close, args.max_body, page_size=args.error_page)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port} close={args.close} loop={args.loop}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--close", choices=("plain", "pysock"), default="pysock")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--max-body", type=int, default=64 * 1024)
    parser.add_argument(
        "--error-page", type=int, default=0, help="pad the 413 body to this many bytes"
    )
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
