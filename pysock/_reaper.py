"""The background close engine: a native thread of the C core that owns
submitted sockets and finishes their close by policy, so the caller never
waits.

``Reaper.submit(sock, policy)`` validates everything first (a bad policy, a
closed or non-socket handle, a socket already submitted, Linger/Drain on a
datagram socket raise there and nothing is taken over), then detaches the
socket object and returns a ``concurrent.futures.Future[CloseResult]``.

Graceful and Abortive need no waiting: they are done at once in the
submitting thread and the future is already resolved.  Linger and Drain are
started at submission (their deadlines count from then) and queued, under
the C reaper's own mutex, for its native thread (``csrc/reaper.c``: a
pthread or a Windows thread that never touches Python or the GIL).  That
thread runs the C core's long-lived engine over op storage that grows on
demand: one readiness set (epoll on Linux, poll/WSAPoll elsewhere) and a
wake socket, so new work is taken at once.  Finished closes are published
in batches to a completion queue.

One small Python thread per reaper, the delivery thread, waits for those
batches (without the GIL), harvests up to 256 completions at a time, turns
each into a :class:`pysock.CloseResult` or an exception, and resolves the
futures — so futures' done-callbacks run in the delivery thread: keep them
short.  :mod:`pysock.aio` hands its results to each event loop instead: one
wake-up of the loop per batch, and a bounded number of awaiting tasks
resolved per loop iteration.

Both threads are background work and run below the priority of the
process's other threads, so that a busy server's event loop comes first
when the CPUs are short: on Linux each raises its own nice value by 10
(the nice value is per thread there), on Windows it is
``THREAD_PRIORITY_BELOW_NORMAL``; elsewhere the nice value is per process,
so nothing is changed.

Reclamation follows real pressure, as nginx's does: a lingering close in
flight holds a descriptor, and only when descriptors run short is the
oldest one aborted (RST, ``reason="reclaimed"``) to make room:

- when the closes in the engine would exceed the descriptor ceiling, the
  soft ``RLIMIT_NOFILE`` minus a reserve for the rest of the process
  (``max(64, soft // 8)``; no ceiling when the soft limit is unlimited).
  The native thread reads the limit again whenever a submission would pass
  the ceiling it last read, and at least once a second otherwise: raising
  the limit with ``resource.setrlimit`` takes effect at once, lowering it
  within a second.  Windows has no such limit: the ceiling is computed as
  if the soft limit were ``WINDOWS_NOFILE`` (16,384);
- when the caller reports exhaustion: a server whose ``accept()`` fails with
  EMFILE/ENFILE calls :meth:`Reaper.descriptors_exhausted`, and the oldest
  closes are reclaimed (nginx's rule: an eighth of those in flight, at
  least 1, at most 32);
- beyond ``max_in_flight`` when one is given (None, the default: no fixed
  cap).

Reclaims are counted (``stats().reclaimed``) and logged on the ``pysock``
logger as a warning, at most once a second, with the count since the last
message (the delivery thread logs them).

Fork: neither the native thread nor the delivery thread exists in a child
process.  Around ``os.fork()`` every live reaper's native thread is parked
at a safe point and its locks are held, so the child's copy is consistent;
in the child an inherited reaper is closed (its submit raises
:class:`ReaperClosedError`, its futures still pending there get that error
too, and the child's copies of its in-flight handles are closed so the
parent's closes are not held up), while :func:`default_reaper` starts a new
reaper in the child on first use.  The parent's closes go on undisturbed.

Thread safety, also on free-threaded CPython (3.13t, 3.14t): the C state is
guarded by the C reaper's mutex; the Python state (the token map from each
queued close to its future, and the counts by reason and how) by a
``threading.Lock``.  The counts C keeps (in flight, done, failed, reclaimed)
are read from it: one set of books.
Nothing here relies on the GIL.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pysock._binding import (
    ABORTIVE,
    DRAIN,
    LINGER,
    NativeReaper,
    NativeStats,
    background_thread,
    check_stream,
    close_now,
    fd_ceiling,
    handed_over,
    op_args,
    start_op,
)
from pysock._errors import NotASocketError, ReaperClosedError
from pysock._types import CloseResult, Drain, Linger, Policy

__all__ = [
    "Done",
    "Reaper",
    "ReaperClosedError",
    "ReaperStats",
    "default_reaper",
    "ensure_open",
    "hand_over",
]

_log = logging.getLogger("pysock")

#: Windows has no RLIMIT_NOFILE: the descriptor ceiling is computed as if
#: the soft limit were this.
WINDOWS_NOFILE = 16384
#: Descriptors left to the rest of the process: max(RESERVE_MIN, soft // RESERVE_DIV).
RESERVE_MIN = 64
RESERVE_DIV = 8
#: Reclaims are logged at most this often (seconds).
LOG_INTERVAL = 1.0
# The native reaper's first op slots; it doubles them when full.
_FIRST_SLOTS = 256
#: How long interpreter exit lets in-flight closes finish before aborting them.
EXIT_TIMEOUT = 1.0
# Completions harvested per call, and handed out per chunk: between chunks
# of a full harvest the delivery thread sleeps _YIELD_S so that an event
# loop's thread waiting for the GIL gets it (a thread that merely calls into
# C and back would take the GIL again before the waiter wakes up, and the
# waiter would wait out the 5 ms switch interval).
_HARVEST = 256
_CHUNK = 64
_YIELD_S = 0.00005

#: What a hand-over is told when the close is over: its result or its error.
Done = Callable[[CloseResult | BaseException], None]
_Sink = Callable[[Any], None]  # a Done, or the setter of a reclaim's Future[int]


@dataclass(frozen=True)
class ReaperStats:
    """Counts from :meth:`Reaper.stats`.

    ``in_flight``: submitted and not finished (queued for the native thread
    or in its engine); ``done``: finished with a result; ``failed``: ended
    with an exception; ``by_reason`` / ``by_how``: the results delivered, by
    ``CloseResult.reason`` and ``.how``; ``reclaimed``: closes the reaper
    aborted to make room (those that ended with a result are also in
    ``by_reason["reclaimed"]``); ``max_in_flight``: the explicit cap, or
    None; ``ceiling``: how many may be in flight now before the oldest is
    reclaimed (the smaller of the cap and the descriptor ceiling; None: no
    limit).

    One set of books: ``in_flight``, ``failed``, ``reclaimed`` and ``done``
    are the native reaper's own counts (``done`` plus the Graceful and
    Abortive closes done at submission, which never reach it); only
    ``by_reason`` and ``by_how`` are counted in Python."""

    in_flight: int
    done: int
    failed: int
    max_in_flight: int | None
    by_reason: dict[str, int]
    by_how: dict[str, int]
    reclaimed: int = 0
    ceiling: int | None = None


# Every socket object a reaper has taken over (it is detached, so a second
# submission would otherwise only see "closed").
_taken: weakref.WeakSet[socket.socket] = weakref.WeakSet()
_taken_lock = threading.Lock()
_reapers: weakref.WeakSet[Reaper] = weakref.WeakSet()
_reapers_lock = threading.Lock()


def _future_setter(fut: Future[CloseResult]) -> Done:
    def done(outcome: CloseResult | BaseException) -> None:
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)

    return done


def descriptor_ceiling() -> int | None:
    """How many lingering closes may hold a descriptor before the oldest is
    reclaimed: the soft RLIMIT_NOFILE (``WINDOWS_NOFILE`` on Windows) minus
    ``max(RESERVE_MIN, soft // RESERVE_DIV)``, at least 1; None when the
    soft limit is unlimited.  Computed by the C core, as its thread does."""
    return fd_ceiling(RESERVE_MIN, RESERVE_DIV, WINDOWS_NOFILE) or None


class Reaper:
    """A background close engine; see the module documentation.

    ``max_in_flight``: an explicit cap on lingering closes (Linger, Drain)
    in flight; beyond it the oldest is aborted to make room.  None (the
    default): no fixed cap, only descriptor pressure reclaims.  ``name``
    names the delivery thread.  Use as a context manager or call
    :meth:`close`."""

    def __init__(self, max_in_flight: int | None = None, *, name: str = "pysock-reaper"):
        if max_in_flight is not None:
            if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
                raise TypeError(
                    f"max_in_flight must be an int or None, not {type(max_in_flight).__name__}"
                )
            if max_in_flight < 1:
                raise ValueError(f"max_in_flight must be >= 1 or None, got {max_in_flight}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        self._cap = max_in_flight
        # Guards everything below that changes (free-threaded CPython too):
        # the token map, the counts, the state flags.  Lock order: this
        # lock, then the C reaper's mutex (C never calls back into Python).
        self._lock = threading.Lock()
        self._sinks: dict[int, _Sink] = {}  # token -> sink, for closes and reclaims queued
        self._token = 0
        self._closed = False  # no new work
        self._forked = False  # inherited through fork: the threads are gone
        self._stopped = False  # the delivery thread is over
        self._freed = False  # the native reaper is freed (its last counts in _final)
        self._closers = 0  # close() calls inside NativeReaper.close / the join
        # The counts the native reaper cannot have: closes done at
        # submission (Graceful, Abortive), and every result by reason and how.
        self._done_here = 0
        self._by_reason: dict[str, int] = {}
        self._by_how: dict[str, int] = {}
        self._final: NativeStats | None = None
        # Reclaims not yet logged, the last message's time, the last cause:
        # the delivery thread's own.
        self._unlogged = 0
        self._logged_at = -LOG_INTERVAL
        self._cause = ""
        self._reserve = (RESERVE_MIN, RESERVE_DIV)
        size = _FIRST_SLOTS if max_in_flight is None else min(max_in_flight, _FIRST_SLOTS)
        self._native = NativeReaper(size, max_in_flight or 0, _HARVEST)
        self._native.set_fd_limit(RESERVE_MIN, RESERVE_DIV, WINDOWS_NOFILE)
        self._thread = threading.Thread(target=self._deliver_main, name=name, daemon=True)
        with _reapers_lock:
            _reapers.add(self)
        self._thread.start()

    # -- the public face ---------------------------------------------------

    @property
    def max_in_flight(self) -> int | None:
        """The explicit cap given at construction, or None."""
        return self._cap

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, sock: socket.socket, policy: Policy) -> Future[CloseResult]:
        """Take ``sock`` over and close it by ``policy`` in the background.

        Returns at once.  Bad input raises here and nothing is taken over:
        ``TypeError`` (not a socket object, bad policy type), ``ValueError``
        (Linger/Drain on a datagram socket, a socket already submitted),
        :class:`pysock.NotASocketError` (closed, or not a socket),
        :class:`ReaperClosedError` (this reaper is closed).  The future
        cannot be cancelled: the close goes on regardless.  It is resolved
        in the reaper's delivery thread (Graceful and Abortive: already
        here), where its done-callbacks run."""
        fut: Future[CloseResult] = Future()
        fut.set_running_or_notify_cancel()
        self._submit(sock, policy, _future_setter(fut))
        return fut

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work; let what is in flight finish by its own policy
        until ``timeout`` seconds from now (None: no limit beyond the
        policies' own deadlines), then abort the rest (``how="abortive"``,
        ``reason="timeout"``; the peer sees RST), and stop the threads.
        Blocks until every future is resolved (called from a done-callback,
        in the delivery thread, it does not wait for that thread); idempotent,
        and a later call may only bring the deadline forward."""
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        with self._lock:
            self._closed = True
            if self._freed or self._forked:
                return
            self._closers += 1
        try:
            # Joins the native thread (no GIL held while it waits).
            self._native.close(timeout)
            if threading.current_thread() is not self._thread:
                self._thread.join()
        finally:
            with self._lock:
                self._closers -= 1
                free = self._closers == 0 and self._stopped and not self._freed
                if free:
                    self._retire()
            if free:
                # After the delivery thread's final harvest; no native call
                # can begin now (each checks _freed or _closed under the lock).
                self._native.free()

    def descriptors_exhausted(self, n: int | None = None) -> Future[int]:
        """Report that the process ran out of descriptors (``accept()`` or
        ``socket()`` failed with EMFILE or ENFILE): the native thread
        reclaims the ``n`` oldest lingering closes in flight (default: an
        eighth of them, at least 1 and at most 32, as nginx does) so that
        their descriptors are free again.  Returns at once; the future
        resolves (in the delivery thread) with how many were reclaimed once
        their descriptors are closed (0 when none was in flight, or in a
        forked child)."""
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"n must be an int or None, not {type(n).__name__}")
            if n < 1:
                raise ValueError(f"n must be >= 1 or None, got {n}")
        fut: Future[int] = Future()
        fut.set_running_or_notify_cancel()
        queued = False
        with self._lock:
            if not (self._freed or self._forked or self._stopped):
                self._token += 1
                token = self._token
                self._sinks[token] = fut.set_result
                try:
                    queued = self._native.reclaim_async(n or 0, token)
                finally:
                    if not queued:
                        del self._sinks[token]
        if not queued:
            fut.set_result(0)
        return fut

    def stats(self) -> ReaperStats:
        ceiling = fd_ceiling(*self._reserve, WINDOWS_NOFILE) or None
        if self._cap is not None:
            ceiling = self._cap if ceiling is None else min(self._cap, ceiling)
        with self._lock:
            books = self._books()
            return ReaperStats(
                in_flight=books.in_flight,
                done=books.done + self._done_here,
                failed=books.failed,
                max_in_flight=self._cap,
                by_reason=dict(self._by_reason),
                by_how=dict(self._by_how),
                reclaimed=books.reclaimed,
                ceiling=ceiling,
            )

    def __enter__(self) -> Reaper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        with self._lock:
            in_flight = self._books().in_flight
        return f"<pysock.Reaper {state} in_flight={in_flight} max={self._cap}>"

    # -- the books -----------------------------------------------------------

    def _books(self) -> NativeStats:
        """Under the lock: the native reaper's counts (its last, once freed)."""
        if self._final is not None:
            return self._final
        return self._native.stats()

    def _retire(self) -> None:
        """Under the lock, before the native reaper is freed: keep its last
        counts, and let no native call begin."""
        self._final = self._native.stats()
        self._freed = True

    # -- submission (any thread) -------------------------------------------

    def _check_open(self) -> None:
        """No system call: after fork the at-fork hook has marked the
        inherited reaper closed (and forked)."""
        if self._closed:
            if self._forked:
                raise ReaperClosedError(
                    "this Reaper belongs to the parent process: its threads do not exist "
                    "after fork; use pysock.default_reaper() or create a new Reaper in the child"
                )
            raise ReaperClosedError("the Reaper is closed and takes no new work")

    def _submit(self, sock: socket.socket, policy: Policy, done: Done) -> None:
        if not isinstance(sock, socket.socket):
            raise TypeError(
                f"submit takes a socket.socket, not {type(sock).__name__} "
                "(wrap a raw handle with socket.socket(fileno=fd))"
            )
        if type(policy) is Drain:  # the common case, without op_args' isinstance chain
            kind, timeout = DRAIN, policy.timeout
            idle, cap = policy.idle or 0.0, policy.max_bytes or 0
        elif type(policy) is Linger:
            kind, timeout, idle, cap = LINGER, policy.timeout, 0.0, 0
        else:
            kind, timeout, idle, cap = op_args(policy)
        self._check_open()
        fd = sock.fileno()
        if fd == -1:
            if sock in _taken:
                raise ValueError("this socket was already submitted to a reaper")
            raise NotASocketError(errno.EBADF, "socket object is closed")
        if kind >= LINGER:
            check_stream(kind, sock)  # raises ValueError
        elif kind <= ABORTIVE:
            # Nothing to wait for: close now, in this thread.
            result = close_now(sock, kind == ABORTIVE)
            with _taken_lock:
                _taken.add(sock)
            with self._lock:
                self._done_here += 1
                self._count(result)
            done(result)
            return
        # Validation in this thread (SO_TYPE: a descriptor that is no longer
        # a socket is refused here, untouched), then the started op is
        # queued for the native thread.
        op = start_op(fd, kind, timeout, idle, cap)
        with self._lock:
            self._check_open()
            self._token += 1
            token = self._token
            # Registered before the C queue sees the token, and the delivery
            # thread needs this lock to look it up: the future cannot be
            # resolved before the socket object is detached below.
            try:
                self._sinks[token] = done
                queued = self._native.submit(op, token)
            finally:
                # Here, not after the call: a signal handler that raises
                # (SIGTERM -> SystemExit) may do so right after the call
                # returns.  The C side marks the op handed over, and the
                # socket object must then let go of the handle whatever is
                # raised, or both would close it.
                if handed_over(op):
                    with _taken_lock:  # (a WeakSet is no thread-safe container)
                        _taken.add(sock)
                    sock.detach()
                else:
                    self._sinks.pop(token, None)
        if not queued:  # not reached: _closed is set under the lock first
            raise ReaperClosedError("the Reaper is closed and takes no new work")

    def _count(self, result: CloseResult) -> None:
        """Under the lock."""
        self._by_reason[result.reason] = self._by_reason.get(result.reason, 0) + 1
        self._by_how[result.how] = self._by_how.get(result.how, 0) + 1

    # -- the delivery thread -------------------------------------------------

    def _deliver_main(self) -> None:
        background_thread()  # as the native thread: the loop's threads come first
        try:
            self._deliver_loop()
        except BaseException:  # pragma: no cover - a bug in pysock
            _log.exception("pysock reaper: the delivery thread failed")
        finally:
            with self._lock:
                self._stopped = True
                left, self._sinks = self._sinks, {}
                # Closed from a done-callback (in this thread): no close()
                # call is left to free the native reaper, so this does.
                free = self._closed and self._closers == 0 and not self._freed
                if free:
                    self._retire()
            if free:
                self._native.free()  # its thread is joined: every close() returned
            exc = ReaperClosedError("the reaper stopped before this close was reported")
            for sink in left.values():  # none unless out of memory in C, or a bug
                self._deliver(sink, exc)

    def _deliver_loop(self) -> None:
        native = self._native
        while True:
            # Without the GIL (cffi releases it): until completions wait, or
            # the time comes to log reclaims, or the native thread stopped.
            rc = native.wait(self._log_wait_ms())
            n = native.harvest()
            if n:
                self._handle(n)
                if n == _HARVEST:
                    time.sleep(_YIELD_S)  # more waiting: let a waiting loop in first
            elif rc == -1:
                self._log_reclaims(force=True)
                return
            self._log_reclaims()

    def _handle(self, n: int) -> None:
        for first in range(0, n, _CHUNK):
            if first:
                time.sleep(_YIELD_S)
            items = self._native.outcomes(first, min(n, first + _CHUNK))
            sinks: list[tuple[_Sink | None, Any]] = []
            reclaimed = 0
            with self._lock:
                pop = self._sinks.pop
                for token, outcome in items:
                    sinks.append((pop(token, None), outcome))
                    if isinstance(outcome, CloseResult):
                        self._count(outcome)
                        if outcome.reason == "reclaimed":
                            reclaimed += 1
            if reclaimed:
                self._unlogged += reclaimed
                self._cause = self._pressure()
            for sink, outcome in sinks:
                if isinstance(outcome, int) and outcome:
                    self._cause = "the caller reported descriptor exhaustion (EMFILE/ENFILE)"
                if sink is not None:
                    self._deliver(sink, outcome)

    def _pressure(self) -> str:
        """Why the native thread reclaimed on its own: the cap or the
        descriptor ceiling, whichever is lower now."""
        fds = fd_ceiling(*self._reserve, WINDOWS_NOFILE)
        if self._cap is not None and (fds == 0 or self._cap <= fds):
            return f"max_in_flight={self._cap}"
        return f"descriptors short: {fds} in flight is the ceiling under RLIMIT_NOFILE"

    def _log_wait_ms(self) -> int:
        if not self._unlogged:
            return -1
        left = self._logged_at + LOG_INTERVAL - time.monotonic()
        return max(1, int(left * 1000) + 1)

    def _log_reclaims(self, force: bool = False) -> None:
        """At most once per LOG_INTERVAL (or at the end): one warning with
        the count since the last."""
        if not self._unlogged:
            return
        now = time.monotonic()
        if not force and now - self._logged_at < LOG_INTERVAL:
            return
        _log.warning(
            "pysock reaper: reclaimed %d lingering close%s (RST, their responses may be "
            "lost) since the last message; last cause: %s",
            self._unlogged,
            "" if self._unlogged == 1 else "s",
            self._cause,
        )
        self._unlogged = 0
        self._logged_at = now

    @staticmethod
    def _deliver(sink: _Sink, outcome: Any) -> None:
        try:
            sink(outcome)
        except Exception:  # a sink must never stop the delivery thread
            _log.exception("pysock reaper: delivering a result failed")

    # -- fork ---------------------------------------------------------------

    def _before_fork(self) -> None:
        """Hold this reaper's lock and park its native thread across fork(),
        so that the child copies consistent state.  Released by
        _after_fork_in_parent / _after_fork_in_child."""
        self._lock.acquire()
        if not self._freed:
            self._native.fork_prepare()

    def _after_fork_in_parent(self) -> None:
        if not self._freed:
            self._native.fork_parent()
        self._lock.release()

    def _after_fork_in_child(self) -> list[_Sink]:
        """In a forked child: the threads are gone.  The C side closes the
        child's copies of the handles it held (so the parent's closes are
        not held up by them) and stops; here the reaper is marked closed and
        the sinks still pending are returned, to be failed."""
        if not self._freed:
            self._native.fork_child()
            self._retire()
            self._native.free()  # touches no thread after fork_child
        self._forked = True
        self._closed = True
        self._stopped = True
        if self._final is not None:  # the parent's closes in flight are not this process's
            self._final = self._final._replace(in_flight=0)
        pending = list(self._sinks.values())
        self._sinks.clear()
        self._lock.release()
        return pending


# -- the internal hand-over: pysock.aio and pysock.integrations ---------------


def hand_over(reaper: Reaper, sock: socket.socket, policy: Policy, done: Done) -> None:
    """Hand ``sock`` to ``reaper`` to be closed by ``policy``; ``done`` is
    called once with the result or the error: at once for Graceful and
    Abortive (in this thread), else in the reaper's delivery thread (keep it
    short).  Validates as :meth:`Reaper.submit` does and raises the same
    errors, with nothing taken over; from its return on the socket object is
    detached and the handle is the reaper's."""
    reaper._submit(sock, policy, done)


def ensure_open(reaper: Reaper) -> None:
    """Raise :class:`ReaperClosedError` if ``reaper`` takes no new work (it
    was closed, or belongs to the parent of a forked process)."""
    reaper._check_open()


# -- the process-wide default reaper ----------------------------------------

_default: Reaper | None = None
_default_lock = threading.Lock()


def default_reaper() -> Reaper:
    """The process-wide reaper, created on first use (no fixed cap: it
    reclaims only when descriptors run short).  At interpreter exit it gets ``EXIT_TIMEOUT``
    seconds to finish, then aborts the rest.  In a forked child a new one is
    created on first use."""
    global _default
    reaper = _default
    if reaper is not None and not reaper.closed:
        return reaper
    with _default_lock:
        if _default is None or _default.closed:
            _default = Reaper(name="pysock-default-reaper")
        return _default


def _at_exit() -> None:
    deadline = time.monotonic() + EXIT_TIMEOUT
    with _reapers_lock:
        reapers = list(_reapers)
    for reaper in reapers:
        if not reaper._forked:
            reaper.close(timeout=max(0.0, deadline - time.monotonic()))


# The reapers held across a fork (strong references until it is over).
_forking: list[Reaper] = []


def _before_fork() -> None:
    _reapers_lock.acquire()
    _forking[:] = list(_reapers)
    for reaper in _forking:
        reaper._before_fork()


def _after_fork_in_parent() -> None:
    for reaper in _forking:
        reaper._after_fork_in_parent()
    _forking.clear()
    _reapers_lock.release()


def _after_fork_in_child() -> None:
    global _default, _default_lock, _reapers_lock, _taken_lock
    _default_lock = threading.Lock()
    _taken_lock = threading.Lock()
    _default = None
    pending: list[_Sink] = []
    for reaper in _forking:
        pending.extend(reaper._after_fork_in_child())
    _forking.clear()
    _reapers_lock = threading.Lock()
    exc = ReaperClosedError("the process forked: this close goes on in the parent only")
    for sink in pending:
        Reaper._deliver(sink, exc)


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
