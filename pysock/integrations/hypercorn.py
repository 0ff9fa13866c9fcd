"""hypercorn with a lingering close: ``serve(app, config)``.

``serve`` has ``hypercorn.asyncio.serve``'s signature and does what it does::

    from hypercorn.config import Config
    from pysock.integrations.hypercorn import serve

    asyncio.run(serve(app, Config()))

except that when hypercorn closes a plain TCP connection whose request
bytes may still be unread — the response to a request whose body the app did
not read, a 400 for a bad request, ``keep_alive_max_requests`` reached, a
graceful shutdown mid-request — the socket is handed to
:func:`pysock.aio.close_transport` with :func:`pysock.integrations.policy`
(a lingering close in the Reaper's thread, never on the event loop) instead
of hypercorn's ``write_eof()`` and ``close()``, whose RST would destroy the
response the client has not read yet.  Closes with nothing unread are
hypercorn's own.  Everything else (keep-alive, pipelining, HTTP/2,
WebSockets, its timeouts) is hypercorn's.  Works on uvloop.

Graceful shutdown: hypercorn waits ``graceful_timeout`` for its connection
tasks; a lingering close is part of its connection's task, so the shutdown
waits for it (each bounded by the policy's ``timeout``, and by
``graceful_timeout``: a close still lingering then goes on in the Reaper
until interpreter exit).

Not lingered: TLS connections (the raw socket cannot be lingered without
skipping TLS's close_notify), QUIC and non-TCP sockets.  Only
``hypercorn.asyncio`` (not the trio worker).

Each result goes to :func:`pysock.integrations.record` as ``"hypercorn"``.

hypercorn internals relied on (hypercorn has no extension point for its
connection close; checked against hypercorn 0.17.3 and 0.18.0, the range
pinned in the ``hypercorn`` extra):
``hypercorn.asyncio.run.worker_serve`` makes a
``hypercorn.asyncio.run.TCPServer`` (a module global, looked up per
connection) for each connection — here that name is bound, once, to a
subclass that lingers only for the configs passed to this ``serve`` (a plain
``hypercorn.asyncio.serve`` in the same process is unchanged);
``TCPServer.run()``, ``TCPServer._close()`` (hypercorn's close:
``write_eof``, ``close``, ``wait_closed``, ``idle_task.stop()``),
``TCPServer.writer``, ``.config``, ``.idle_task`` and ``.protocol`` (a
``ProtocolWrapper`` whose ``.protocol.connection`` is the h11 connection
read for ``their_state``).  A hypercorn without them fails at import with an
ImportError, never a silent plain close.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from pysock.integrations._asyncio import linger
from pysock.integrations._common import bytes_waiting, require

require("hypercorn", "hypercorn")
_run = require("hypercorn.asyncio.run", "hypercorn", attributes=("TCPServer", "worker_serve"))
require(
    "hypercorn.asyncio.tcp_server",
    "hypercorn",
    attributes=("TCPServer.run", "TCPServer._close", "TCPServer.protocol_send"),
)
_hasyncio = require("hypercorn.asyncio", "hypercorn", attributes=("serve",))
require("hypercorn.utils", "hypercorn", attributes=("wrap_app",))
import h11  # noqa: E402  (hypercorn's own dependency)
from hypercorn.asyncio.tcp_server import TCPServer as _TCPServer  # noqa: E402
from hypercorn.config import Config  # noqa: E402

if TYPE_CHECKING:
    from hypercorn.typing import Framework
else:
    Framework = Any

__all__ = ["serve"]

SERVER = "hypercorn"

# The configs of the servers run by this module's serve().
_configs: weakref.WeakSet[Config] = weakref.WeakSet()
_install_lock = threading.Lock()

# h11's states in which the peer is done sending for now.
_THEY_ARE_DONE = (h11.IDLE, h11.DONE, h11.MUST_CLOSE, h11.CLOSED)


class _LingeringTCPServer(_TCPServer):
    """hypercorn's per-connection TCPServer whose close lingers (see the
    module); for a config not passed to this module's serve, hypercorn's."""

    _pysock_linger: asyncio.Task[None] | None = None

    def _pysock_may_be_unread(self, transport: asyncio.BaseTransport) -> bool:
        if self.config not in _configs:
            return False
        if transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
            return False
        tsock = transport.get_extra_info("socket")
        if tsock is None or tsock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        conn = getattr(
            getattr(getattr(self, "protocol", None), "protocol", None), "connection", None
        )
        if isinstance(conn, h11.Connection):
            if conn.their_state not in _THEY_ARE_DONE:  # SEND_BODY, ERROR, ...
                return True
            if conn.their_state is h11.IDLE and conn.trailing_data[0]:
                return True
        try:
            peek = tsock.dup()
        except OSError:
            return True
        with peek:
            return bytes_waiting(peek)

    async def _close(self) -> None:
        if self._pysock_linger is None:
            transport = self.writer.transport
            if not self._pysock_may_be_unread(transport):
                await super()._close()
                return
            # As hypercorn's close() would: nothing more reaches the protocol
            # (what arrives is discarded; see pysock.integrations._asyncio).
            # (uvloop's transports are not asyncio.Transport subclasses.)
            self._pysock_linger = asyncio.ensure_future(
                linger(cast(asyncio.Transport, transport), SERVER)
            )
        # The connection's task (run) waits for the lingering close; the
        # protocol that asked for the close does not.
        await self.idle_task.stop()

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._pysock_linger is not None:
                await self._pysock_linger


def _install() -> None:
    with _install_lock:
        current = getattr(_run, "TCPServer")  # noqa: B009 (not re-exported)
        if current is _LingeringTCPServer:
            return
        if current is not _TCPServer:
            raise ImportError(
                "pysock.integrations.hypercorn: hypercorn.asyncio.run.TCPServer has been "
                f"replaced by {current!r}; cannot attach the lingering close"
            )
        setattr(_run, "TCPServer", _LingeringTCPServer)  # noqa: B010


async def serve(
    app: Framework,
    config: Config,
    *,
    shutdown_trigger: Callable[..., Awaitable[Any]] | None = None,
    mode: Literal["asgi", "wsgi"] | None = None,
) -> None:
    """``hypercorn.asyncio.serve`` with a lingering close (see the module)."""
    if not isinstance(config, Config):
        raise TypeError(f"config must be a hypercorn.config.Config, not {type(config).__name__}")
    _install()
    _configs.add(config)
    await _hasyncio.serve(app, config, shutdown_trigger=shutdown_trigger, mode=mode)
