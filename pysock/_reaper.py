"""The background close engine: one daemon thread that owns submitted sockets
and finishes their close by policy, so the caller never waits.

``Reaper.submit(sock, policy)`` validates everything first (a bad policy, a
closed or non-socket handle, a socket already submitted, Linger/Drain on a
datagram socket raise there and nothing is taken over), then detaches the
socket object and returns a ``concurrent.futures.Future[CloseResult]``.

Graceful and Abortive need no waiting: they are done at once in the
submitting thread and the future is already resolved.  Linger and Drain are
started at submission (their deadlines count from then) and handed to the
reaper thread, which runs the C core's long-lived engine over an array of
ops (it starts small and doubles as needed): one readiness set (epoll on
Linux, poll/WSAPoll elsewhere), waits without the GIL, and a wake socket so
that new work is taken at once.

Reclamation follows real pressure, as nginx's does: a lingering close in
flight holds a descriptor, and only when descriptors run short is the
oldest one aborted (RST, ``reason="reclaimed"``) to make room:

- when the closes in the engine would exceed the descriptor ceiling, the
  soft ``RLIMIT_NOFILE`` minus a reserve for the rest of the process
  (``max(64, soft // 8)``; read again at every wake, so raising the limit
  with ``resource.setrlimit`` takes effect at once; no ceiling when the soft
  limit is unlimited).  Windows has no such limit: the ceiling is computed
  as if the soft limit were ``WINDOWS_NOFILE`` (16,384);
- when the caller reports exhaustion: a server whose ``accept()`` fails with
  EMFILE/ENFILE calls :meth:`Reaper.descriptors_exhausted`, and the oldest
  closes are reclaimed (nginx's rule: an eighth of those in flight, at
  least 1, at most 32);
- beyond ``max_in_flight`` when one is given (None, the default: no fixed
  cap).

Reclaims are counted (``stats().reclaimed``) and logged on the ``pysock``
logger as a warning, at most once a second, with the count since the last
message.

Futures are resolved in the reaper thread, so their done-callbacks run there:
keep them short.

Fork: the reaper thread does not exist in a child process.  After
``os.fork()`` a reaper inherited from the parent is closed in the child (its
submit raises :class:`ReaperClosedError`, its futures still pending there get
that error too, and the child's copies of its in-flight handles are closed so
the parent's closes are not held up), while :func:`default_reaper` starts a
new reaper in the child on first use.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

if sys.platform != "win32":
    import resource

from pysock._api import _check_stream, _close_now, _op_args, _result
from pysock._core import ffi, lib
from pysock._errors import NotASocketError, raise_error
from pysock._types import CloseResult, Policy

__all__ = ["Reaper", "ReaperClosedError", "ReaperStats", "default_reaper"]

_log = logging.getLogger("pysock")

#: Windows has no RLIMIT_NOFILE: the descriptor ceiling is computed as if
#: the soft limit were this.
WINDOWS_NOFILE = 16384
#: Descriptors left to the rest of the process: max(RESERVE_MIN, soft // RESERVE_DIV).
RESERVE_MIN = 64
RESERVE_DIV = 8
#: Reclaims are logged at most this often (seconds).
LOG_INTERVAL = 1.0
# The engine's first array of ops; it doubles when full (up to the ceiling).
_FIRST_SLOTS = 256
# descriptors_exhausted() without n: nginx's ngx_drain_connections rule.
_EXHAUSTED_MAX = 32
#: How long interpreter exit lets in-flight closes finish before aborting them.
EXIT_TIMEOUT = 1.0
_IDLE_SLICE_MS = 1000
# ps_engine_run returns as soon as an op is over or the wake socket is
# readable; the slice only bounds how long the thread sleeps otherwise.
_BUSY_SLICE_MS = 1000
# Python work in the reaper thread holds the GIL; an event loop in another
# thread waiting for it would wait up to the switch interval (5 ms).  So a
# big batch (10,000 closes finishing at once) is handled in chunks, with a
# short sleep between them that lets the waiting thread take the GIL.
_CHUNK = 64
_YIELD_S = 0.0001
_OP_SIZE = ffi.sizeof("ps_op")

Done = Callable[[CloseResult | BaseException], None]


class ReaperClosedError(RuntimeError):
    """The reaper was closed (or belongs to the parent of a forked process)
    and takes no new work."""


@dataclass(frozen=True)
class ReaperStats:
    """Counts from :meth:`Reaper.stats`.

    ``in_flight``: submitted and not finished (queued for the reaper thread
    or in its engine); ``done``: finished with a result; ``failed``: ended
    with an exception; ``by_reason`` / ``by_how``: the finished results by
    ``CloseResult.reason`` and ``.how``; ``reclaimed``: closes the reaper
    aborted to make room (those that ended with a result are also in
    ``by_reason["reclaimed"]``); ``max_in_flight``: the explicit cap, or
    None; ``ceiling``: how many may be in flight now before the oldest is
    reclaimed (the smaller of the cap and the descriptor ceiling; None: no
    limit)."""

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
_reapers: weakref.WeakSet[Reaper] = weakref.WeakSet()


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
    soft limit is unlimited."""
    if sys.platform == "win32":
        soft = WINDOWS_NOFILE
    else:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY or soft < 0:
            return None
    return max(1, soft - max(RESERVE_MIN, soft // RESERVE_DIV))


def _error(err: Any) -> BaseException:
    try:
        raise_error(err)
    except BaseException as exc:  # the value wanted
        return exc


class Reaper:
    """A background close engine; see the module documentation.

    ``max_in_flight``: an explicit cap on lingering closes (Linger, Drain)
    in flight; beyond it the oldest is aborted to make room.  None (the
    default): no fixed cap, only descriptor pressure reclaims.  Use as a
    context manager or call :meth:`close`."""

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
        size = _FIRST_SLOTS if max_in_flight is None else min(max_in_flight, _FIRST_SLOTS)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[Any, Done]] = collections.deque()
        self._closed = False  # no new work
        self._stopped = False  # the thread is over
        self._deadline: float | None = None  # abort what is left at this time
        self._forked = False
        self._woken = False
        self._done = 0
        self._failed = 0
        self._in_flight = 0  # queued + in the engine
        self._by_reason: dict[str, int] = {}
        self._by_how: dict[str, int] = {}
        self._reclaimed = 0
        self._exhausted: list[tuple[int | None, Future[int]]] = []  # reports to act on
        self._ceiling = self._compute_ceiling()
        # Reclaims not yet logged, the last message's time, the last cause.
        self._unlogged = 0
        self._logged_at = -LOG_INTERVAL
        self._cause = ""
        # The engine and its arrays: touched by the reaper thread only.
        self._size = size
        self._ops = ffi.new("ps_op[]", size)
        self._freed = ffi.new("size_t[]", size)
        self._nfreed = ffi.new("size_t *")
        self._err = ffi.new("ps_error *")
        self._slots: list[Done | None] = [None] * size
        self._free = list(range(size - 1, -1, -1))
        self._order: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._engine = lib.ps_engine_new(self._ops, size)
        if self._engine == ffi.NULL:
            raise MemoryError("pysock: out of memory for the reaper's engine")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        if lib.ps_engine_set_wake(self._engine, self._wake_r.fileno(), self._err) == lib.PS_FAIL:
            lib.ps_engine_free(self._engine)
            self._wake_r.close()
            self._wake_w.close()
            raise_error(self._err)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
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
        cannot be cancelled: the close goes on regardless."""
        fut: Future[CloseResult] = Future()
        fut.set_running_or_notify_cancel()
        self._submit(sock, policy, _future_setter(fut))
        return fut

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work; let what is in flight finish by its own policy
        until ``timeout`` seconds from now (None: no limit beyond the
        policies' own deadlines), then abort the rest (``how="abortive"``,
        ``reason="timeout"``), and stop the thread.  Blocks until then;
        idempotent."""
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        with self._lock:
            self._closed = True
            if timeout is not None:
                deadline = time.monotonic() + timeout
                if self._deadline is None or deadline < self._deadline:
                    self._deadline = deadline
        self._wake()
        if threading.current_thread() is not self._thread and os.getpid() == self._pid:
            self._thread.join()

    def descriptors_exhausted(self, n: int | None = None) -> Future[int]:
        """Report that the process ran out of descriptors (``accept()`` or
        ``socket()`` failed with EMFILE or ENFILE): the reaper thread
        reclaims the ``n`` oldest lingering closes in flight (default: an
        eighth of them, at least 1 and at most 32, as nginx does) so that
        their descriptors are free again.  Returns at once; the future
        resolves with how many were reclaimed once their descriptors are
        closed (0 when none was in flight, or in a forked child)."""
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"n must be an int or None, not {type(n).__name__}")
            if n < 1:
                raise ValueError(f"n must be >= 1 or None, got {n}")
        fut: Future[int] = Future()
        fut.set_running_or_notify_cancel()
        with self._lock:
            if self._pid != os.getpid() or self._stopped:
                fut.set_result(0)
                return fut
            self._exhausted.append((n, fut))
        self._wake()
        return fut

    def stats(self) -> ReaperStats:
        with self._lock:
            return ReaperStats(
                in_flight=self._in_flight,
                done=self._done,
                failed=self._failed,
                max_in_flight=self._cap,
                by_reason=dict(self._by_reason),
                by_how=dict(self._by_how),
                reclaimed=self._reclaimed,
                ceiling=self._ceiling,
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
        return (
            f"<pysock.Reaper {state} in_flight={self._in_flight} "
            f"max={self._cap} ceiling={self._ceiling}>"
        )

    # -- submission (any thread) -------------------------------------------

    def _check_open(self) -> None:
        if self._pid != os.getpid():
            raise ReaperClosedError(
                "this Reaper belongs to the parent process: its thread does not exist "
                "after fork; use pysock.default_reaper() or create a new Reaper in the child"
            )
        if self._closed:
            raise ReaperClosedError("the Reaper is closed and takes no new work")

    def _submit(self, sock: socket.socket, policy: Policy, done: Done) -> None:
        if not isinstance(sock, socket.socket):
            raise TypeError(
                f"submit takes a socket.socket, not {type(sock).__name__} "
                "(wrap a raw handle with socket.socket(fileno=fd))"
            )
        kind, timeout, idle, cap = _op_args(policy)
        self._check_open()
        fd = sock.fileno()
        if fd == -1:
            if sock in _taken:
                raise ValueError("this socket was already submitted to a reaper")
            raise NotASocketError(9, "socket object is closed")  # EBADF
        _check_stream(kind, sock)
        if kind <= lib.PS_ABORTIVE:
            # Nothing to wait for: close now, in this thread.
            with self._lock:
                self._check_open()
            result = _close_now(sock, kind)
            _taken.add(sock)
            with self._lock:
                self._count(result)
            done(result)
            return
        op = ffi.new("ps_op *")
        if lib.ps_op_start(op, fd, kind, timeout, idle, cap) == lib.PS_FAIL:
            raise_error(op.res.err)
        with self._lock:
            self._check_open()
            sock.detach()
            _taken.add(sock)
            self._queue.append((op, done))
            self._in_flight += 1
            wake = not self._woken
            self._woken = True
        if wake:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _count(self, result: CloseResult) -> None:
        """Under the lock."""
        self._done += 1
        self._by_reason[result.reason] = self._by_reason.get(result.reason, 0) + 1
        self._by_how[result.how] = self._by_how.get(result.how, 0) + 1

    # -- the reaper thread ---------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug in pysock
            _log.exception("pysock reaper thread failed; aborting what it holds")
            with self._lock:
                self._closed = True
            self._abort_all(lib.PS_REASON_TIMEOUT, exc)
        finally:
            with self._lock:
                self._stopped = True
                reports, self._exhausted = self._exhausted, []
            for _, fut in reports:
                fut.set_result(0)
            if not self._forked:
                lib.ps_engine_free(self._engine)
                self._engine = ffi.NULL
                self._wake_r.close()
                self._wake_w.close()

    def _loop(self) -> None:
        nfreed, err = self._nfreed, self._err
        slots, order = self._slots, self._order
        while True:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while self._wake_r.recv(4096):
                    pass
            ceiling = self._compute_ceiling()
            with self._lock:
                batch = self._queue
                self._queue = collections.deque()
                reports, self._exhausted = self._exhausted, []
                self._woken = False
                self._ceiling = ceiling
                closed, deadline = self._closed, self._deadline
            for k, (op, done) in enumerate(batch, 1):
                self._begin(op, done, ceiling)
                if k % _CHUNK == 0:
                    time.sleep(_YIELD_S)
            for n, fut in reports:  # after the batch: what was submitted before counts
                fut.set_result(self._relieve(n))
            # _begin may have grown the engine: its arrays are new.
            engine, freed, ops = self._engine, self._freed, self._ops
            now = time.monotonic()
            self._log_reclaims(now)
            if deadline is not None and now >= deadline:
                self._abort_all(lib.PS_REASON_TIMEOUT, None)
            if closed and not order:
                with self._lock:
                    if not self._queue:
                        return
                continue
            slice_ms = _BUSY_SLICE_MS if order else _IDLE_SLICE_MS
            if deadline is not None:
                slice_ms = max(0, min(slice_ms, int((deadline - now) * 1000) + 1))
            pending = lib.ps_engine_run(engine, slice_ms, freed, nfreed, err)
            n = nfreed[0]
            for first in range(0, n, _CHUNK):
                if first:
                    time.sleep(_YIELD_S)
                results = []
                for j in range(first, min(n, first + _CHUNK)):
                    i = freed[j]
                    results.append((slots[i], _result(ops[i].res)))
                    self._release(i)
                with self._lock:
                    self._in_flight -= len(results)
                    for _, result in results:
                        self._count(result)
                for done, result in results:
                    self._deliver(done, result)
            if pending == lib.PS_FAIL:
                exc = _error(err)
                if not isinstance(exc, InterruptedError):
                    _log.error("pysock reaper: the engine's wait failed (%s); aborting", exc)
                    self._abort_all(lib.PS_REASON_TIMEOUT, None)
            elif pending != len(order):
                self._reap_failed()

    def _compute_ceiling(self) -> int | None:
        fds = descriptor_ceiling()
        if self._cap is None:
            return fds
        return self._cap if fds is None else min(self._cap, fds)

    def _begin(self, op: Any, done: Done, ceiling: int | None) -> None:
        if ceiling is not None:
            while self._order and len(self._order) >= ceiling:  # the oldest make room
                why = (
                    f"max_in_flight={self._cap}"
                    if ceiling == self._cap
                    else f"descriptors short: {ceiling} in flight is the ceiling "
                    f"under RLIMIT_NOFILE"
                )
                self._reclaim(next(iter(self._order)), why)
        if not self._free and not self._grow(ceiling):
            self._reclaim(next(iter(self._order)), "out of memory for the engine")
        i = self._free.pop()
        ffi.memmove(self._ops + i, op, _OP_SIZE)
        self._slots[i] = done
        self._order[i] = None
        if lib.ps_engine_add(self._engine, i, self._err) == lib.PS_FAIL:  # pragma: no cover
            raise_error(self._err)

    def _grow(self, ceiling: int | None) -> bool:
        """A bigger engine for the ops in flight (all slots are taken):
        double the array, at most to the ceiling.  The ops move to the new
        engine, which begins them afresh (their shutdown is done, so that
        is one more non-blocking step each); freeing the old engine closes
        only its readiness set.  False if there is no room for it."""
        old = self._size
        size = old * 2 if ceiling is None else max(old + 1, min(old * 2, ceiling))
        ops = ffi.new("ps_op[]", size)
        freed = ffi.new("size_t[]", size)
        ffi.memmove(ops, self._ops, old * _OP_SIZE)
        engine = lib.ps_engine_new(ops, size)
        if engine == ffi.NULL:
            return False
        if lib.ps_engine_set_wake(engine, self._wake_r.fileno(), self._err) == lib.PS_FAIL:
            lib.ps_engine_free(engine)  # e.g. EMFILE for its epoll set
            return False
        for k, i in enumerate(self._order, 1):
            if lib.ps_engine_add(engine, i, self._err) == lib.PS_FAIL:  # pragma: no cover
                lib.ps_engine_free(engine)
                return False
            if k % (_CHUNK * 16) == 0:  # let a waiting event loop have the GIL
                time.sleep(_YIELD_S)
        lib.ps_engine_free(self._engine)
        self._engine, self._ops, self._freed, self._size = engine, ops, freed, size
        self._slots.extend([None] * (size - old))
        self._free[:0] = range(size - 1, old - 1, -1)
        return True

    def _relieve(self, n: int | None) -> int:
        """Reclaim the n oldest (default: nginx's share) for a report of
        descriptor exhaustion; how many were reclaimed."""
        if n is None:
            n = max(1, min(_EXHAUSTED_MAX, len(self._order) // 8))
        n = min(n, len(self._order))
        for i in list(self._order)[:n]:
            self._reclaim(i, "the caller reported descriptor exhaustion (EMFILE/ENFILE)")
        self._log_reclaims()
        return n

    def _reclaim(self, i: int, why: str) -> None:
        self._abort(i, lib.PS_REASON_RECLAIMED, None)
        with self._lock:
            self._reclaimed += 1
        self._unlogged += 1
        self._cause = why

    def _log_reclaims(self, now: float | None = None) -> None:
        """At most once per LOG_INTERVAL: one warning with the count since
        the last (the loop calls this at every wake, at least once a
        second, so a count left over is logged within about two seconds)."""
        if not self._unlogged:
            return
        if now is None:
            now = time.monotonic()
        if now - self._logged_at < LOG_INTERVAL:
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

    def _release(self, i: int) -> None:
        self._slots[i] = None
        del self._order[i]
        self._free.append(i)

    def _abort(self, i: int, reason: int, exc: BaseException | None) -> None:
        """End in-flight op i now (RST) and resolve it."""
        done = self._slots[i]
        assert done is not None
        outcome: CloseResult | BaseException
        if exc is not None:
            outcome = exc
        elif self._ops[i].phase != lib.PS_PENDING:
            outcome = _error(self._ops[i].res.err)
        elif lib.ps_engine_abort(self._engine, i, reason, self._err) == lib.PS_FAIL:
            outcome = _error(self._err)
        else:
            outcome = _result(self._ops[i].res)
        self._release(i)
        with self._lock:
            self._in_flight -= 1
            if isinstance(outcome, BaseException):
                self._failed += 1
            else:
                self._count(outcome)
        self._deliver(done, outcome)

    def _abort_all(self, reason: int, exc: BaseException | None) -> None:
        for i in list(self._order):
            self._abort(i, reason, exc)
        if exc is not None:
            with self._lock:
                batch, self._queue = self._queue, collections.deque()
                self._in_flight -= len(batch)
                self._failed += len(batch)
            res = ffi.new("ps_result *")
            for op, done in batch:  # started but never begun: abort them here
                lib.ps_close_now(op.fd, 1, res)
                self._deliver(done, exc)

    def _reap_failed(self) -> None:
        """Ops the core could not free (their close failed): resolve them
        with the error."""
        failed = [i for i in self._order if self._ops[i].phase != lib.PS_PENDING]
        for i in failed:
            self._abort(i, lib.PS_REASON_TIMEOUT, None)

    @staticmethod
    def _deliver(done: Done, outcome: CloseResult | BaseException) -> None:
        try:
            done(outcome)
        except Exception:  # a sink must never stop the reaper
            _log.exception("pysock reaper: delivering a result failed")

    # -- fork ---------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """In a forked child: this reaper's thread is gone.  Close the
        child's copies of the handles it held (so the parent's closes are
        not held up by them) and fail what was pending here."""
        self._forked = True
        self._closed = True
        self._lock = threading.Lock()
        holders: list[Done] = []
        for i in self._order:
            fd = int(self._ops[i].fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            done = self._slots[i]
            if done is not None:
                holders.append(done)
        for op, done in self._queue:
            with contextlib.suppress(OSError):
                os.close(int(op.fd))
            holders.append(done)
        self._queue.clear()
        self._order.clear()
        self._in_flight = 0
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()
        exc = ReaperClosedError("the process forked: this close goes on in the parent only")
        for done in holders:
            with contextlib.suppress(Exception):
                done(exc)


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
    for reaper in list(_reapers):
        if reaper._pid == os.getpid():
            reaper.close(timeout=max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    global _default, _default_lock
    _default_lock = threading.Lock()
    _default = None
    for reaper in list(_reapers):
        reaper._after_fork_in_child()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
