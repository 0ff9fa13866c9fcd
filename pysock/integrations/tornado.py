"""tornado with a lingering close: ``HTTPServer``.

``HTTPServer`` is ``tornado.httpserver.HTTPServer`` with the same
constructor; use it where you used tornado's::

    from pysock.integrations.tornado import HTTPServer

    server = HTTPServer(app)
    server.listen(8888)

(``tornado.web.Application.listen`` makes tornado's own server: create this
one instead.)

When tornado closes a connection whose request bytes may still be unread —
the response to a request whose body was not read (a
``@stream_request_body`` handler that answers 413 in ``prepare``), a 400 for
a malformed or too-long request, a body timeout, a connection closed by
``close_all_connections`` mid-request — the socket goes to the
process-wide :class:`pysock.Reaper` with :func:`pysock.integrations.policy`
(a lingering close on the Reaper's thread, never on the IOLoop) instead of
``socket.close()``, whose RST would destroy the response the client has not
read yet.  Other closes (nothing unread: a finished request, an idle
keep-alive timeout, a peer that closed) stay tornado's own.  Keep-alive,
streaming, ``idle_connection_timeout``/``body_timeout``, WebSockets (whose
streams are closed by the same code: a close with nothing unread is the
plain one) are tornado's.

Graceful shutdown: ``server.stop(); await server.close_all_connections()``
as with tornado's server; ``close_all_connections`` here also waits for the
lingering closes in flight (each bounded by the policy's ``timeout``).

Not lingered: TLS streams (``ssl_options``: the raw socket cannot be
lingered without skipping TLS's close_notify) and non-TCP sockets.

Each result goes to :func:`pysock.integrations.record` as ``"tornado"``.

tornado internals relied on (checked against tornado 6.4 and 6.6.1):
``handle_stream(stream, address)`` is given the ``IOStream`` that
``TCPServer`` made (its class is switched to a subclass here);
``IOStream.close_fd()`` (the documented hook by which ``BaseIOStream.close``
closes the file, after removing it from the IOLoop) and ``IOStream.socket``;
``BaseIOStream._read_buffer_size`` (bytes read but not consumed);
``HTTP1Connection._request_start_line`` (set once a request's headers are
read) and ``._read_finished`` (its body was read to its end), reached
through ``start_request``'s ``request_conn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from concurrent.futures import Future
from typing import Any

from pysock._reaper import default_reaper
from pysock._types import CloseResult
from pysock.integrations._common import bytes_waiting, policy, record, require

require("tornado", "tornado")
_httpserver = require(
    "tornado.httpserver",
    "tornado",
    attributes=("HTTPServer.handle_stream", "HTTPServer.start_request"),
)
_iostream = require("tornado.iostream", "tornado", attributes=("IOStream.close_fd",))
require("tornado.http1connection", "tornado", attributes=("HTTP1Connection",))

import tornado  # noqa: E402
from tornado import httputil  # noqa: E402
from tornado.httpserver import HTTPServer as _HTTPServer  # noqa: E402
from tornado.iostream import IOStream  # noqa: E402

__all__ = ["HTTPServer"]

if "close_fd" not in IOStream.__dict__:
    # BaseIOStream.close_fd only raises NotImplementedError: the override
    # below must extend IOStream's own.
    raise ImportError(
        f"pysock.integrations.tornado: tornado {tornado.version} has no IOStream.close_fd "
        "of its own, which this integration needs; install a tested version: "
        "pip install 'pysock-linger[tornado]'"
    )

SERVER = "tornado"


def _record(fut: Future[CloseResult]) -> None:
    exc = fut.exception()
    record(SERVER, exc if exc is not None else fut.result())


class _LingeringIOStream(IOStream):
    """tornado's IOStream whose ``close_fd`` lingers when request bytes may
    be unread.  Only ever made by switching the class of an IOStream."""

    _pysock_server: weakref.ref[HTTPServer]
    _pysock_request: weakref.ref[Any] | None

    def _pysock_may_be_unread(self, sock: socket.socket) -> bool:
        if self.error is not None:
            return False  # a reset or an I/O error: nothing to save
        if getattr(self, "_read_buffer_size", 1):  # unknown: assume bytes are unread
            return True
        ref = self._pysock_request
        request = ref() if ref is not None else None
        if (
            request is not None
            and getattr(request, "_request_start_line", None) is not None
            and not getattr(request, "_read_finished", True)
        ):
            return True  # a request's headers were read, its body was not (all)
        return bytes_waiting(sock)

    def close_fd(self) -> None:
        sock = self.socket
        server = self._pysock_server()
        if sock is None or server is None or not self._pysock_may_be_unread(sock):
            super().close_fd()
            return
        self.socket = None  # type: ignore[assignment]
        try:
            cfut = default_reaper().submit(sock, policy())
        except Exception as exc:  # the reaper is closed (interpreter exit)
            record(SERVER, exc)
            sock.close()
            return
        cfut.add_done_callback(_record)
        server._pysock_track(cfut)


class HTTPServer(_HTTPServer):
    """tornado's HTTPServer with a lingering close (see the module)."""

    _pysock_lingering: set[asyncio.Future[CloseResult]]

    def _pysock_track(self, cfut: Future[CloseResult]) -> None:
        try:
            afut = asyncio.wrap_future(cfut)
        except RuntimeError:  # no event loop in this thread
            return
        lingering = self.__dict__.setdefault("_pysock_lingering", set())
        lingering.add(afut)
        afut.add_done_callback(lingering.discard)

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        sock = stream.socket
        if (
            type(stream) is IOStream
            and sock is not None
            and sock.family in (socket.AF_INET, socket.AF_INET6)
        ):
            stream.__class__ = _LingeringIOStream
            linger = stream
            assert isinstance(linger, _LingeringIOStream)
            linger._pysock_server = weakref.ref(self)
            linger._pysock_request = None
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        stream = getattr(request_conn, "stream", None)
        if isinstance(stream, _LingeringIOStream):
            stream._pysock_request = weakref.ref(request_conn)
        return super().start_request(server_conn, request_conn)

    async def close_all_connections(self) -> None:
        """tornado's ``close_all_connections``, then wait for the lingering
        closes in flight (each ends by the policy's deadline)."""
        await super().close_all_connections()
        lingering = self.__dict__.get("_pysock_lingering")
        while lingering:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(lingering), return_exceptions=True)
