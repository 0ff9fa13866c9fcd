"""How the threaded servers' integrations close a connection: through the
default Reaper (never blocking the calling thread) or blocking in a thread
that belongs to that connection alone, each close recorded, and the closes
still in flight waited for when the server shuts down."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from pysock._api import close
from pysock._reaper import default_reaper, hand_over
from pysock._types import CloseResult, Policy
from pysock.integrations._common import policy, record

__all__ = ["Closer", "policy_deadline"]


def policy_deadline(p: Policy | None = None) -> float:
    """The longest one close by ``p`` (default: :func:`policy`) can take, in
    seconds: its total deadline (0 for Graceful and Abortive)."""
    p = policy() if p is None else p
    timeout = getattr(p, "timeout", 0.0)
    return float(timeout) if timeout is not None else 0.0


def _plain_close(sock: socket.socket) -> None:
    # socket.socket.close itself, not the object's own close: the servers'
    # sockets may be subclasses whose close() is the lingering close.
    with contextlib.suppress(OSError):
        socket.socket.close(sock)


class Closer:
    """Lingering closes for one server integration (``server`` names it in
    the log and in :func:`pysock.integrations.stats`)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._cond = threading.Condition()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Closes submitted or blocking and not finished yet."""
        with self._cond:
            return self._in_flight

    def submit(self, sock: socket.socket) -> None:
        """Hand ``sock`` to the default reaper with :func:`policy`; returns
        at once.  A socket already closed (or already handed over) is left
        alone, as the servers' own close leaves it."""
        if sock.fileno() == -1:
            return
        with self._cond:
            self._in_flight += 1
        try:
            # The hand-over with a callback, as pysock.aio does: the same
            # checks and hand-over as Reaper.submit without a Future per close
            # (its creation, condition and callback list, run on the reaper
            # thread under the GIL the server's threads want).
            hand_over(default_reaper(), sock, policy(), self._done)
        except BaseException as exc:
            if sock.fileno() == -1 and not isinstance(exc, Exception):
                # A signal handler raised (SIGTERM -> SystemExit) after the
                # reaper took the socket: its close goes on and is recorded
                # by _done.
                raise
            # Not a stream socket, a reaper that could not take it: counted
            # as an error (and logged), and the descriptor is not leaked.
            self._release()
            record(self.server, exc)
            _plain_close(sock)
            if not isinstance(exc, Exception):
                raise
            return

    def close_blocking(self, sock: socket.socket) -> None:
        """Close ``sock`` with :func:`policy` in this thread (at most the
        policy's deadline)."""
        if sock.fileno() == -1:
            return
        with self._cond:
            self._in_flight += 1
        try:
            outcome: CloseResult | BaseException = close(sock, policy())
        except Exception as exc:
            outcome = exc
            _plain_close(sock)
        finally:
            self._release()
        record(self.server, outcome)

    def _done(self, outcome: CloseResult | BaseException) -> None:
        # Runs in the reaper thread: short.
        record(self.server, outcome)
        self._release()

    def _release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no close is in flight, at most ``timeout`` seconds
        (None: the policy's deadline and a second); True if none is left."""
        if timeout is None:
            timeout = policy_deadline() + 1.0
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
