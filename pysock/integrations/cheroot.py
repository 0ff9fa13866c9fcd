"""cheroot's WSGI server with a lingering close::

    from pysock.integrations.cheroot import Server

    Server(("127.0.0.1", 8080), app).start()  # cheroot.wsgi.Server's constructor

``Server`` is a ``cheroot.wsgi.Server`` whose ``ConnectionClass`` (cheroot's
public hook for the connection type) is :class:`HTTPConnection`.  cheroot
closes every connection through ``HTTPConnection.close`` — from a worker
thread when a request ends the connection, and from its connection
manager's selector thread when a kept-alive connection expires or the
server stops — with ``shutdown(SHUT_RDWR)`` and ``close()``: the kernel
resets the connection when request bytes are unread.  Here that close
becomes a lingering close through :func:`pysock.default_reaper`.  (cheroot's
``linger`` flag, set when it wants the client to read an error first and
then leaves the socket to the garbage collector, gets the same lingering
close.)

Why the Reaper and not a blocking close in the worker thread: cheroot's
worker threads are a small shared pool (10 by default); a drain as long as
the policy allows would hold one per closing connection, and the selector
thread must never wait.

``Server.stop()`` waits, after cheroot's own stop, for the lingering closes
still in flight, at most the policy's deadline.

Internals used (checked against cheroot 10.0.1 and 11.1.2): what
``cheroot.server.HTTPConnection.close`` does besides the socket close
(``self.rfile.close()``), and its ``socket`` attribute.  A connection whose
socket is not a ``socket.socket`` (the pyOpenSSL adapter's) keeps cheroot's
own close, with a warning in the log.
"""

from __future__ import annotations

import logging
import socket

from pysock.integrations._common import require
from pysock.integrations._threaded import Closer

__all__ = ["HTTPConnection", "Server"]

require("cheroot.server", "cheroot", attributes=("HTTPConnection.close", "HTTPServer.stop"))
require("cheroot.wsgi", "cheroot", attributes=("Server.ConnectionClass",))
from cheroot import server as _server  # noqa: E402  (after the checks)
from cheroot import wsgi as _wsgi  # noqa: E402

_log = logging.getLogger("pysock.integrations")
_closer = Closer("cheroot")
_warned = False


class HTTPConnection(_server.HTTPConnection):
    """cheroot's connection, closed with a lingering close."""

    def close(self) -> None:
        global _warned
        sock = self.socket
        if not isinstance(sock, socket.socket):
            if not _warned:
                _warned = True
                _log.warning(
                    "cheroot: %s is not a socket.socket: no lingering close for it",
                    type(sock).__name__,
                )
            super().close()
            return
        self.rfile.close()
        _closer.submit(sock)


class Server(_wsgi.Server):
    """``cheroot.wsgi.Server`` with :class:`HTTPConnection`."""

    ConnectionClass = HTTPConnection

    def stop(self) -> None:
        super().stop()
        _closer.wait()
