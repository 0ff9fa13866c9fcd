"""waitress with a lingering close::

    from pysock.integrations.waitress import serve

    serve(app, host="127.0.0.1", port=8080)  # waitress.serve's keywords

``serve`` builds waitress's server with ``waitress.server.create_server``
and sets each listening server's ``channel_class`` (waitress's hook for the
connection type) to :class:`Channel`, then runs it as ``waitress.serve``
does.  Everything else is waitress's own: it reads each request (body
included) before the application runs, answers an over-limit body with its
own small 413, keeps connections alive, and closes them on its main
(asyncore) thread.  Where waitress closes a connection — after a response
that ends it, on its idle and error paths, at shutdown — it calls the
socket's ``close()``; the channel's socket is a ``socket.socket`` whose
``close()`` hands it to :func:`pysock.default_reaper`, so the main thread
never waits for the lingering close.

When waitress leaves request bytes unread at its close: its own 413 (the
rest of the refused body), a response that ends the connection while the
client has pipelined more, an error.

When waitress's loop stops (KeyboardInterrupt or SystemExit: SIGINT, or a
SIGTERM handler that raises SystemExit), ``serve`` closes the connections
still open — waitress leaves them to be reset at process exit — with the
lingering close, and waits for the lingering closes in flight, at most the
policy's deadline.

Internals used (checked against waitress 3.0.0 and 3.0.2): the
``channel_class`` attribute of ``waitress.server.BaseWSGIServer``,
``HTTPChannel.__init__(server, sock, addr, adj, map)``, that channels close
through their socket's ``close()``, ``wasyncore.close_all`` and the socket
map of the server (``_map``) or of ``MultiSocketServer`` (``map``).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from pysock.integrations._common import require
from pysock.integrations._threaded import Closer

__all__ = ["Channel", "serve"]

require("waitress.channel", "waitress", attributes=("HTTPChannel.__init__",))
require(
    "waitress.server",
    "waitress",
    attributes=("create_server", "BaseWSGIServer.channel_class", "MultiSocketServer"),
)
require("waitress.wasyncore", "waitress", attributes=("close_all",))
from waitress import channel as _channel  # noqa: E402  (after the checks)
from waitress import server as _server  # noqa: E402
from waitress import wasyncore as _wasyncore  # noqa: E402

_closer = Closer("waitress")


class _LingeringSocket(socket.socket):
    """A connection's socket whose ``close()`` is the lingering close."""

    def close(self) -> None:
        _closer.submit(self)

    @classmethod
    def adopt(cls, sock: socket.socket) -> _LingeringSocket:
        timeout = sock.gettimeout()
        new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new.settimeout(timeout)
        return new


class Channel(_channel.HTTPChannel):  # type: ignore[misc]
    """waitress's HTTP channel, its socket closed with a lingering close."""

    def __init__(
        self, server: Any, sock: socket.socket, addr: Any, adj: Any, map: Any = None
    ) -> None:
        if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM:
            sock = _LingeringSocket.adopt(sock)
        super().__init__(server, sock, addr, adj, map)


def create_server(application: Any, **kw: Any) -> Any:
    """``waitress.server.create_server`` with :class:`Channel` on every
    listening server."""
    server = _server.create_server(application, **kw)
    if isinstance(server, _server.MultiSocketServer):
        listeners = [s for s in server.map.values() if isinstance(s, _server.BaseWSGIServer)]
    else:
        listeners = [server]
    for listener in listeners:
        listener.channel_class = Channel
    return server


def serve(app: Any, **kw: Any) -> None:
    """``waitress.serve`` (same keywords), with the lingering close."""
    quiet = kw.pop("_quiet", False)
    if not quiet:
        logging.basicConfig()  # as waitress.serve does
    server = create_server(app, **kw)
    if not quiet:
        server.print_listen("Serving on http://{}:{}")
    try:
        server.run()
    finally:
        # waitress's run() returns on SIGINT/SystemExit with its connections
        # still open, to be reset at process exit; close them (lingering) as
        # MultiSocketServer.close does, then let those closes finish.
        _wasyncore.close_all(
            server.map if isinstance(server, _server.MultiSocketServer) else server._map,
            ignore_all=True,
        )
        _closer.wait()
