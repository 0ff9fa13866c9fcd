"""A lingering close for any ``socketserver`` TCP server (``http.server``
included)::

    from http.server import ThreadingHTTPServer
    from pysock.integrations.socketserver import LingeringCloseMixin

    class Server(LingeringCloseMixin, ThreadingHTTPServer):
        pass

The mixin goes first.  It overrides ``shutdown_request`` (socketserver's
public hook, called once per connection when its handler is done), where
``TCPServer`` shuts the socket down and closes it (the kernel resets it when
request bytes are unread); everything else is the server's own.

Where the close runs:

- ``ThreadingMixIn``: blocking, in the connection's own thread (nothing else
  waits for it; the server's ``block_on_close`` joins those threads at
  ``server_close`` as it joins their handlers).
- ``ForkingMixIn``: blocking, in the connection's own child process (which
  exits right after, so a background close would be cut short).
- A serial server (neither): through :func:`pysock.default_reaper`, since
  the serving loop itself calls ``shutdown_request`` and must go on.

``server_close()`` also waits for this process's lingering closes still in
flight (daemon threads such as ``ThreadingHTTPServer``'s are not joined by
socketserver), at most the policy's deadline.  The policy is
:func:`pysock.integrations.policy`.  Only the standard library is needed,
so there is no extra.
"""

from __future__ import annotations

import socket
import socketserver as _socketserver
from typing import Any

from pysock.integrations._threaded import Closer

__all__ = ["LingeringCloseMixin"]

_closer = Closer("socketserver")


class LingeringCloseMixin:
    """Put before a ``socketserver.TCPServer`` (or subclass) in the bases."""

    def shutdown_request(self, request: Any) -> None:
        if not isinstance(request, socket.socket) or request.type != socket.SOCK_STREAM:
            super().shutdown_request(request)  # type: ignore[misc]
            return
        if isinstance(self, (_socketserver.ThreadingMixIn, _forking_mixin())):
            _closer.close_blocking(request)
        else:
            _closer.submit(request)

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        _closer.wait()


def _forking_mixin() -> type:
    # ForkingMixIn exists only where os.fork does.
    return getattr(_socketserver, "ForkingMixIn", _socketserver.ThreadingMixIn)
