"""uvicorn with a lingering close: ``H11Protocol`` and ``HttpToolsProtocol``.

Turn it on from the command line or in ``uvicorn.Config``::

    uvicorn app:app --http pysock.integrations.uvicorn:H11Protocol
    uvicorn app:app --http pysock.integrations.uvicorn:HttpToolsProtocol
    uvicorn.run(app, http=pysock.integrations.uvicorn.H11Protocol)

Both are uvicorn's own protocol classes (subclasses); the only difference is
what happens when uvicorn closes a connection while request bytes may still
be unread — a response with ``Connection: close`` (an app's early 413, a
503 from ``--limit-concurrency``, a 500), a 400 for a bad request, an
HTTP/1.0 request, the close of a connection at graceful shutdown, a
pipelined request not yet read.  There the socket is handed to
:func:`pysock.aio.close_transport` with :func:`pysock.integrations.policy`
(a lingering close in the Reaper's thread, never on the event loop) instead
of ``transport.close()``, whose RST would destroy the response the client
has not read yet.  A close with nothing unread (an idle keep-alive timeout,
a finished request) stays uvicorn's own ``transport.close()``.  Everything
else — keep-alive, pipelining, streaming responses, WebSocket upgrades
(handed over to uvicorn's WebSocket protocol with the real transport),
timeouts, ``--limit-concurrency`` — is uvicorn's.

(uvicorn itself reads and discards the rest of a refused body as long as
the response keeps the connection alive; the trap is a response that closes.)

Graceful shutdown: each lingering close is a task in uvicorn's
``server_state.tasks``, so uvicorn's shutdown waits for the closes in flight
(each bounded by the policy's ``timeout``; uvicorn's
``--timeout-graceful-shutdown`` still cancels them, and a cancelled close
goes on in the Reaper until interpreter exit).  While it lingers, a close
counts in ``--limit-concurrency``'s task count, as the connection it still is.

Not lingered (uvicorn's own close): TLS connections (the raw socket cannot
be taken over without skipping TLS's close_notify) and non-TCP sockets
(``--uds``, ``--fd`` of a Unix socket).  Works with ``--loop uvloop``.

Each result goes to :func:`pysock.integrations.record` as ``"uvicorn"``.

uvicorn internals relied on (checked against uvicorn 0.36.0 and 0.54.0; 0.36.0 is
the first whose command line takes a class for ``--http``):
the constructor ``(config, server_state, app_state, _loop=None)``,
``connection_made`` storing the transport it is given as ``self.transport``
(the request cycles and ``FlowControl`` get it from there), the protocols'
``conn``/``flow``/``cycle``/``pipeline`` attributes read to tell whether
request bytes may be unread, ``handle_websocket_upgrade`` using
``self.transport``, ``send_400_response``, and ``server_state.tasks``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pysock.integrations._asyncio import linger
from pysock.integrations._common import require

require("uvicorn", "uvicorn")
_h11_impl = require(
    "uvicorn.protocols.http.h11_impl",
    "uvicorn",
    attributes=(
        "H11Protocol.connection_made",
        "H11Protocol.handle_websocket_upgrade",
        "H11Protocol.send_400_response",
        "RequestResponseCycle",
    ),
)
import h11  # noqa: E402  (uvicorn's own dependency, present once h11_impl imports)

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _H11Base
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsBase
else:
    _H11Base = _h11_impl.H11Protocol

__all__ = ["H11Protocol", "HttpToolsProtocol"]

#: Made on first use by the module's ``__getattr__`` (it needs httptools).
HttpToolsProtocol: type[_HttpToolsBase]

log = logging.getLogger("pysock.integrations")
SERVER = "uvicorn"
_warned_tls = False


class _LingeringTransport(asyncio.Transport):
    """The transport uvicorn's protocol and request cycles see: the real one,
    except that ``close()`` lingers when ``may_be_unread()`` says so."""

    def __init__(
        self,
        real: asyncio.Transport,
        may_be_unread: Callable[[], bool],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        super().__init__()
        self._real = real
        self._may_be_unread = may_be_unread
        self._tasks = tasks
        self._closing = False

    # -- the change ----------------------------------------------------------

    def close(self) -> None:
        real = self._real
        if self._closing:
            return
        self._closing = True
        if real.is_closing() or not self._may_be_unread():
            real.close()
            return
        # Like transport.close(): nothing more reaches the protocol (what
        # arrives is discarded; see pysock.integrations._asyncio).
        task = asyncio.ensure_future(linger(real, SERVER))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def is_closing(self) -> bool:
        return self._closing or self._real.is_closing()

    def resume_reading(self) -> None:
        if not self._closing:
            self._real.resume_reading()

    # -- the rest is the real transport's ------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._real.get_protocol()

    def is_reading(self) -> bool:
        return self._real.is_reading()

    def pause_reading(self) -> None:
        self._real.pause_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._real.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._real.get_write_buffer_limits()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._real.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._real.writelines(list_of_data)

    def write_eof(self) -> None:
        self._real.write_eof()

    def can_write_eof(self) -> bool:
        return self._real.can_write_eof()

    def abort(self) -> None:
        self._closing = True
        self._real.abort()


def _lingerable(transport: asyncio.Transport) -> bool:
    """A plain TCP transport (not TLS, not a Unix socket)."""
    global _warned_tls
    if transport.get_extra_info("sslcontext") is not None:
        if not _warned_tls:
            _warned_tls = True
            log.warning("uvicorn: TLS connections get uvicorn's own close (no lingering close)")
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)


def _wrap(
    transport: asyncio.Transport, may_be_unread: Callable[[], bool], server_state: Any
) -> asyncio.Transport:
    if not _lingerable(transport):
        return transport
    tasks: set[asyncio.Task[None]] = server_state.tasks
    return _LingeringTransport(transport, may_be_unread, tasks)


def _real(transport: asyncio.Transport) -> asyncio.Transport:
    return transport._real if isinstance(transport, _LingeringTransport) else transport


# h11's states in which the peer is done sending for now.
_THEY_ARE_DONE = (h11.IDLE, h11.DONE, h11.MUST_CLOSE, h11.CLOSED)


class H11Protocol(_H11Base):
    """uvicorn's h11 protocol with a lingering close (see the module)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_wrap(transport, self._may_be_unread, self.server_state))

    def _may_be_unread(self) -> bool:
        """Request bytes may be waiting: a body (or the next request) not
        read to its end, bytes h11 holds unparsed, or reading paused (the
        kernel may hold more)."""
        conn = self.conn
        if conn.their_state not in _THEY_ARE_DONE:  # SEND_BODY, ERROR, ...
            return True
        if conn.their_state is h11.IDLE and conn.trailing_data[0]:
            return True
        return self.flow is not None and self.flow.read_paused

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # uvicorn's WebSocket protocol gets the real transport: its closes
        # are its own.
        self.transport = _real(self.transport)
        super().handle_websocket_upgrade(event)


def _httptools_protocol() -> type[_HttpToolsBase]:
    impl = require(
        "uvicorn.protocols.http.httptools_impl",
        "uvicorn",
        attributes=(
            "HttpToolsProtocol.connection_made",
            "HttpToolsProtocol.handle_websocket_upgrade",
            "HttpToolsProtocol.send_400_response",
            "HttpToolsProtocol.on_message_begin",
            "HttpToolsProtocol.on_message_complete",
            "RequestResponseCycle",
        ),
    )
    del impl
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base

    class HttpToolsProtocol(_Base):
        """uvicorn's httptools protocol with a lingering close (see the module)."""

        _pysock_in_request = False
        _pysock_bad_request = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_wrap(transport, self._may_be_unread, self.server_state))

        def _may_be_unread(self) -> bool:
            """A request begun and not complete, a bad request (the parser
            stopped), a pipelined request queued, or reading paused."""
            return bool(
                self._pysock_in_request
                or self._pysock_bad_request
                or self.pipeline
                or (self.flow is not None and self.flow.read_paused)
            )

        def on_message_begin(self) -> None:
            self._pysock_in_request = True
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._pysock_in_request = False
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            self._pysock_bad_request = True
            super().send_400_response(msg)

        def handle_websocket_upgrade(self) -> None:
            self.transport = _real(self.transport)
            super().handle_websocket_upgrade()

    HttpToolsProtocol.__module__ = __name__
    HttpToolsProtocol.__qualname__ = "HttpToolsProtocol"
    return HttpToolsProtocol


_lazy: dict[str, type[Any]] = {}


def __getattr__(name: str) -> Any:
    # HttpToolsProtocol is made on first use: importing this module needs
    # only uvicorn and h11; HttpToolsProtocol needs httptools too.
    if name == "HttpToolsProtocol":
        cls = _lazy.get(name)
        if cls is None:
            cls = _lazy[name] = _httptools_protocol()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
