"""Lingering close for asyncio servers, without ever blocking the loop.

``await close(sock, policy)`` hands the socket to a :class:`pysock.Reaper`
(the process-wide :func:`pysock.default_reaper` unless one is given), whose
native thread lingers it without the GIL; the loop only submits and is told
the result.
``await close_transport(transport, policy)`` does the same for a
``Protocol``-based server: it waits until the transport's write buffer is
flushed, takes the socket over from the transport, and lingers it off the
loop.

Results reach the loop in batches: the reaper's delivery thread harvests
finished closes from the native thread in batches and puts each loop's
results into that loop's sink, which wakes the loop once per batch (one
``call_soon_threadsafe`` while results wait, not one per close); the loop
then resolves at most ``_BATCH`` awaiting futures per iteration, so 10,000
closes finishing at once never stall it (see ``bench/loop_lag.py``).  Any
number of loops in any threads may share one reaper, together with
``concurrent.futures`` users of it: each loop has its own sink.

Cancelling the awaiting task never leaks the socket: once submitted the
close goes on in the reaper; a ``close_transport`` cancelled while it waits
for the flush hands the socket over at once (what was still unsent in the
transport's buffer is dropped, as ``transport.abort()`` would).

Works with asyncio's selector and proactor (Windows' default) event loops
and with uvloop.  TLS transports are
refused (taking the raw socket would skip TLS's close_notify).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import socket
import threading
import time
import weakref
from typing import Any

from pysock._api import close as _close
from pysock._binding import op_args
from pysock._errors import NotConnectedError
from pysock._reaper import Done, Reaper, default_reaper, ensure_open, hand_over
from pysock._types import Abortive, CloseResult, Drain, Graceful, Linger, Policy

__all__ = ["close", "close_transport"]

_GRACEFUL = Graceful()
_DRAIN = Drain()
_ABORTIVE = Abortive()
# At most this many results are handed to awaiting tasks per loop iteration.
_BATCH = 64
# Flush polling: first wait, and the longest wait between two looks.
_FLUSH_FIRST = 0.001
_FLUSH_MAX = 0.02
#: How long close_transport waits for the write buffer to flush under
#: Graceful (Linger and Drain use their own timeout).
DEFAULT_FLUSH_TIMEOUT = 30.0


class _LoopSink:
    """Results from the reaper's delivery thread to one event loop, in
    batches.  Its deque and flag are under its own lock (no reliance on
    the GIL: free-threaded CPython too)."""

    __slots__ = ("__weakref__", "_items", "_lock", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: collections.deque[
            tuple[asyncio.Future[CloseResult], CloseResult | BaseException]
        ] = collections.deque()
        self._scheduled = False

    def done_for(self, fut: asyncio.Future[CloseResult]) -> Done:
        def done(outcome: CloseResult | BaseException) -> None:
            with self._lock:
                self._items.append((fut, outcome))
                if self._scheduled:
                    return
                self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody is waiting
                with self._lock:
                    self._items.clear()
                    self._scheduled = False

        return done

    def _deliver(self) -> None:
        with self._lock:
            items = self._items
            n = min(len(items), _BATCH)
            batch = [items.popleft() for _ in range(n)]
            more = bool(items)
            if not more:
                self._scheduled = False
        for fut, outcome in batch:
            if fut.done():  # the awaiting task was cancelled
                continue
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
        if more:
            self._loop.call_soon(self._deliver)


_sinks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSink] = (
    weakref.WeakKeyDictionary()
)
_sinks_lock = threading.Lock()


def _sink(loop: asyncio.AbstractEventLoop) -> _LoopSink:
    sink = _sinks.get(loop)  # the common case: no lock (a dict lookup)
    if sink is not None:
        return sink
    with _sinks_lock:
        sink = _sinks.get(loop)
        if sink is None:
            sink = _sinks[loop] = _LoopSink(loop)
        return sink


async def close(
    sock: socket.socket, policy: Policy = _GRACEFUL, *, reaper: Reaper | None = None
) -> CloseResult:
    """Close ``sock`` by ``policy`` without blocking the loop.

    Graceful and Abortive never wait and are done at once, here; Linger and
    Drain are lingered in ``reaper`` (default: :func:`pysock.default_reaper`).
    Bad input raises before anything is taken over, as
    :meth:`pysock.Reaper.submit` does.  If the awaiting task is cancelled,
    the close goes on in the reaper."""
    if type(policy) is Graceful or type(policy) is Abortive:
        return _close(sock, policy)
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[CloseResult] = loop.create_future()
    hand_over(reaper or default_reaper(), sock, policy, _sink(loop).done_for(fut))
    return await fut


def _proactor_sock(transport: asyncio.Transport) -> socket.socket | None:
    """The socket object of a proactor transport (Windows' default loop), or
    None for any other transport.

    Reaches into CPython's asyncio internals (checked in CPython 3.10 to
    3.13, Lib/asyncio/proactor_events.py): ``_ProactorBasePipeTransport``
    keeps its socket in ``_sock``, and its ``_call_connection_lost`` skips
    ``shutdown(SHUT_RDWR)`` when ``_sock.fileno() == -1`` (bpo-43253, in
    3.10.0 and later) and then calls ``_sock.close()``, a no-op on a detached
    socket.  If these are missing, TypeError is raised, never a plain close."""
    proactor = getattr(asyncio, "proactor_events", None)
    base = getattr(proactor, "_ProactorBasePipeTransport", None)
    if base is None or not isinstance(transport, base):
        return None
    sock = getattr(transport, "_sock", None)
    if not isinstance(sock, socket.socket) or not hasattr(base, "_call_connection_lost"):
        raise TypeError(
            "this asyncio's proactor transport has no _sock socket or no "
            "_call_connection_lost: pysock cannot take its socket over silently"
        )
    return sock


def _take(transport: asyncio.Transport, tsock: Any) -> socket.socket:
    """The transport's socket, ours, then the transport is aborted; nothing
    (no FIN, no RST) reaches the peer until the reaper acts.

    Proactor transports (Windows' default loop) shut their socket down
    both ways when they lose the connection, which would reach the peer
    through any duplicate too; so the socket object itself is detached
    right after ``abort()`` (which cancels the transport's pending I/O and
    schedules ``_call_connection_lost``): its handle is ours and the
    transport's ``fileno()`` is -1, so it neither shuts down nor closes.
    Any other transport gets a duplicate of its socket (``dup`` on POSIX,
    ``WSADuplicateSocket`` on Windows): its close only drops its own
    descriptor while the kernel's socket lives on in ours.  (The
    transport's SO_LINGER is left as it is; asyncio and uvloop do not set
    it.)"""
    psock = _proactor_sock(transport)
    if psock is not None:
        family, type_, proto = psock.family, psock.type, psock.proto
        transport.abort()
        return socket.socket(family, type_, proto, fileno=psock.detach())
    # socket.fromfd duplicates the descriptor portably (socket.dup in C).
    sock = socket.fromfd(tsock.fileno(), tsock.family, tsock.type, tsock.proto)
    transport.abort()
    return sock


def _remaining(policy: Policy, spent: float) -> Policy:
    """``policy`` with ``spent`` seconds taken off its total timeout."""
    if isinstance(policy, (Linger, Drain)):
        return dataclasses.replace(policy, timeout=max(policy.timeout - spent, 0.001))
    return policy


async def close_transport(
    transport: asyncio.Transport,
    policy: Policy = _DRAIN,
    *,
    reaper: Reaper | None = None,
    flush_timeout: float | None = None,
) -> CloseResult:
    """Close an asyncio transport's connection by ``policy``, off the loop.

    1. Waits until ``transport.get_write_buffer_size() == 0`` (looking every
       1 ms, backing off to every 20 ms), at most ``flush_timeout`` seconds
       (default: the policy's own timeout; 30 s for Graceful; no wait for
       Abortive).  The protocol keeps receiving data meanwhile.  If the
       flush times out the connection is aborted: ``how="abortive"``,
       ``reason="timeout"``.
    2. Takes the socket over: a descriptor of its own (a duplicate; on the
       proactor loop, Windows' default, the transport's own socket,
       detached), then ``transport.abort()``, whose close drops only the
       transport's descriptor — the peer sees nothing yet; the protocol's
       ``connection_lost(None)`` is called as for any abort.
    3. Lingers it in ``reaper`` (default :func:`pysock.default_reaper`).
       Linger/Drain's ``timeout`` counts from this call; ``elapsed`` too.

    Raises ``TypeError`` for a bad policy or a transport without a socket,
    ``ValueError`` for a TLS transport, :class:`pysock.NotConnectedError`
    if the transport is (or, while flushing, becomes) closed — its socket
    was then not taken over — and :class:`pysock.ReaperClosedError`.
    Cancelling the awaiting task never leaks the socket (see the module)."""
    op_args(policy)  # a bad policy raises before anything is touched
    loop = asyncio.get_running_loop()
    reaper = reaper or default_reaper()
    ensure_open(reaper)
    tsock = transport.get_extra_info("socket")
    if tsock is None:
        raise TypeError("the transport has no socket")
    if transport.get_extra_info("sslcontext") is not None:
        raise ValueError("TLS transports are not supported (close_notify would be skipped)")
    if transport.is_closing() or tsock.fileno() == -1:
        raise NotConnectedError(107, "the transport is closing; its socket was not taken over")
    start = time.monotonic()
    flushed = True
    buffered = transport.get_write_buffer_size
    if buffered() and not isinstance(policy, Abortive):
        if flush_timeout is None:
            flush_timeout = (
                policy.timeout if isinstance(policy, (Linger, Drain)) else DEFAULT_FLUSH_TIMEOUT
            )
        limit = start + flush_timeout
        delay = _FLUSH_FIRST
        try:
            while buffered():
                now = time.monotonic()
                if now >= limit:
                    flushed = False
                    break
                await asyncio.sleep(min(delay, limit - now))
                delay = min(delay * 2, _FLUSH_MAX)
                if transport.is_closing():
                    raise NotConnectedError(
                        107, "the transport closed while flushing; its socket was not taken over"
                    )
        except asyncio.CancelledError:
            if not transport.is_closing():
                # Hand it over now; unsent data in the buffer is dropped.
                sock = _take(transport, tsock)
                hand_over(reaper, sock, policy, _ignore)
            raise
    sock = _take(transport, tsock)
    final = _remaining(policy, time.monotonic() - start) if flushed else _ABORTIVE
    fut: asyncio.Future[CloseResult] = loop.create_future()
    try:
        # One loop iteration, so that the transport's close of its own
        # descriptor happens now: then ours is the only one left.
        await asyncio.sleep(0)
    finally:
        hand_over(reaper, sock, final, _sink(loop).done_for(fut))
    result = await fut
    elapsed = time.monotonic() - start
    if not flushed:
        return dataclasses.replace(result, reason="timeout", elapsed=elapsed)
    return dataclasses.replace(result, elapsed=elapsed)


def _ignore(outcome: CloseResult | BaseException) -> None:
    pass
