"""The binding: the one module that calls the C core (``pysock._core``,
built by ``pysock/_build.py`` from ``csrc/pysock.h``).

It owns the C<->Python tables, each keyed by the core's own ``PS_*``
constants (never by position), the conversion of the core's results and
errors, the start of ops, the engine's run loop, the fast close path and a
small wrapper of the native reaper (``ps_reaper_*``).  Python validates, the
C core does every system call (without the GIL: cffi releases it around
each call), and a ``socket.socket`` is detached exactly when its handle is
freed.

Waiting runs in C in slices of at most ``SLICE_MS``: between slices, and at
once when a signal interrupts the wait, control is back in Python so signal
handlers run (PEP 475) and the wait resumes toward the same deadline.

The other modules import only the names in ``__all__``: the public
functions (:mod:`pysock._api`) and the reaper (:mod:`pysock._reaper`) are
written on top of them, and the integrations use :func:`op_args`.
"""

from __future__ import annotations

import _socket
import os
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

from pysock._errors import NotASocketError, make_error, raise_error
from pysock._types import (
    Abortive,
    CloseResult,
    Drain,
    DrainResult,
    Graceful,
    How,
    Linger,
    Reason,
)

__all__ = [
    "ABORTIVE",
    "DRAIN",
    "ERRORS",
    "GRACEFUL",
    "HOWS",
    "LINGER",
    "REASONS",
    "SHUTDOWN",
    "SLICE_MS",
    "STEPS",
    "NativeReaper",
    "NativeStats",
    "background_thread",
    "check_stream",
    "close_now",
    "close_op",
    "close_ops",
    "drain_op",
    "fd_ceiling",
    "get_linger_option",
    "handed_over",
    "handle",
    "op_args",
    "set_linger_option",
    "shutdown_handle",
    "start_op",
    "to_result",
]

try:
    from pysock._core import ffi, lib
except ModuleNotFoundError as _exc:  # tests/test_import.py
    if _exc.name != "pysock._core":
        raise
    _here = os.path.dirname(os.path.abspath(__file__))
    raise ImportError(
        f"pysock's C core (pysock._core) was never built in {_here}.\n"
        "This is pysock's source tree, and Python imports it ahead of any installed copy "
        "when it runs from the directory above it.  Either build the core in place "
        "(pip install -e .), or run the installed pysock from elsewhere: the `pysock` "
        "command (pysock demo), or python -m pysock from another directory.",
        name="pysock._core",
        path=_here,
    ) from None

# -- the tables: C value -> Python --------------------------------------------

#: CloseResult.how by PS_HOW_*.
HOWS: dict[int, How] = {
    lib.PS_HOW_GRACEFUL: "graceful",
    lib.PS_HOW_ABORTIVE: "abortive",
}
#: CloseResult.reason and DrainResult.reason by PS_REASON_*.
REASONS: dict[int, Reason] = {
    lib.PS_REASON_CLOSED: "closed",
    lib.PS_REASON_EOF: "eof",
    lib.PS_REASON_TIMEOUT: "timeout",
    lib.PS_REASON_IDLE: "idle",
    lib.PS_REASON_MAX_BYTES: "max_bytes",
    lib.PS_REASON_RESET: "reset",
    lib.PS_REASON_NOT_CONNECTED: "not_connected",
    lib.PS_REASON_RECLAIMED: "reclaimed",
}
#: The failed system call by PS_STEP_* (ps_error.step), for messages.
STEPS: dict[int, str] = {
    lib.PS_STEP_NONE: "",
    lib.PS_STEP_SOCKTYPE: "getsockopt(SO_TYPE)",
    lib.PS_STEP_SETLINGER: "setsockopt(SO_LINGER)",
    lib.PS_STEP_GETLINGER: "getsockopt(SO_LINGER)",
    lib.PS_STEP_SHUTDOWN: "shutdown",
    lib.PS_STEP_RECV: "recv",
    lib.PS_STEP_POLL: "poll",
    lib.PS_STEP_CLOSE: "close",
    lib.PS_STEP_IOCTL: "ioctl",
    lib.PS_STEP_ARGS: "arguments",
    lib.PS_STEP_ALLOC: "allocation",
}
#: The portable error code's name (pysock._errors' table) by PS_E*
#: (ps_error.code); PS_OK is no error.
ERRORS: dict[int, str] = {
    lib.PS_ENOTSOCK: "ENOTSOCK",
    lib.PS_ECONNRESET: "ECONNRESET",
    lib.PS_ECONNABORTED: "ECONNABORTED",
    lib.PS_ENOTCONN: "ENOTCONN",
    lib.PS_EWOULDBLOCK: "EWOULDBLOCK",
    lib.PS_EINTR: "EINTR",
    lib.PS_ENETDOWN: "ENETDOWN",
    lib.PS_EINVAL: "EINVAL",
    lib.PS_ENOTSTREAM: "ENOTSTREAM",
    lib.PS_ENOMEM: "ENOMEM",
    lib.PS_EOTHER: "EOTHER",
}

# -- the tables: Python -> C ---------------------------------------------------

#: shutdown()'s ``how`` -> PS_SHUT_*.
SHUTDOWN: dict[str | int, int] = {
    "receive": lib.PS_SHUT_RECEIVE,
    "send": lib.PS_SHUT_SEND,
    "both": lib.PS_SHUT_BOTH,
    socket.SHUT_RD: lib.PS_SHUT_RECEIVE,
    socket.SHUT_WR: lib.PS_SHUT_SEND,
    socket.SHUT_RDWR: lib.PS_SHUT_BOTH,
}
#: The op kinds (op_args' first value), in the core's order: Graceful and
#: Abortive (``kind <= ABORTIVE``) need no waiting; Linger and Drain
#: (``kind >= LINGER``) do, and need a stream socket.
GRACEFUL: int = lib.PS_GRACEFUL
ABORTIVE: int = lib.PS_ABORTIVE
LINGER: int = lib.PS_LINGER
DRAIN: int = lib.PS_DRAIN

#: The longest slice of a wait in C before Python runs signal handlers.
SLICE_MS = 50

_DONE = lib.PS_DONE
_FAIL = lib.PS_FAIL


# -- Winsock, once -------------------------------------------------------------


def _start_winsock() -> None:
    code = lib.ps_init()  # no-op on POSIX
    if code:
        raise OSError(None, "WSAStartup failed", None, code)


ffi.init_once(_start_winsock, "ps_init")


# -- errors and results ----------------------------------------------------------


def _decode(err: Any) -> tuple[str, int, str]:
    """A ``ps_error``'s (code name, OS error, step) for pysock._errors."""
    return ERRORS.get(int(err.code), "EOTHER"), int(err.oserr), STEPS.get(int(err.step), "?")


def _error(err: Any) -> Exception:
    """The exception for a ``ps_error``."""
    return make_error(*_decode(err))


def _fail(err: Any) -> NoReturn:
    raise_error(*_decode(err))


# CloseResult is a frozen dataclass; building one through its __init__ costs
# more than the close itself, so results are filled through the slots.
_new = object.__new__
_set_how, _set_reason, _set_peer_eof, _set_drained, _set_elapsed, _set_acked = (
    vars(CloseResult)[name].__set__
    for name in ("how", "reason", "peer_eof", "drained", "elapsed", "acked")
)
_ACKED = (None, False, True)  # indexed by the core's acked + 1


def to_result(res: Any) -> CloseResult:
    """The CloseResult for a ``ps_result``."""
    result: CloseResult = _new(CloseResult)
    _set_how(result, HOWS[res.how])
    _set_reason(result, REASONS[res.reason])
    _set_peer_eof(result, res.peer_eof != 0)
    _set_drained(result, res.drained)
    _set_elapsed(result, res.elapsed)
    _set_acked(result, _ACKED[res.acked + 1])
    return result


# -- handles and policies ---------------------------------------------------------

# The largest handle the OS can hand out: a POSIX descriptor is a C int; a
# Windows SOCKET is pointer-sized (passed as intptr_t).
_MAX_HANDLE = 2**63 - 1 if sys.platform == "win32" else 2**31 - 1
_EBADF = 9  # errno.EBADF, the same number on every OS


def handle(sock: object) -> tuple[int, socket.socket | None]:
    """(descriptor, owning socket object) for a socket.socket or an int."""
    if isinstance(sock, socket.socket):
        fd = sock.fileno()
        if fd == -1:
            raise NotASocketError(_EBADF, "socket object is closed")
        return fd, sock
    if isinstance(sock, bool) or not isinstance(sock, int):
        raise TypeError(f"expected a socket.socket or an int handle, not {type(sock).__name__}")
    if not 0 <= sock <= _MAX_HANDLE:
        raise ValueError(f"handle must be in 0..{_MAX_HANDLE}, got {sock}")
    return sock, None


def op_args(policy: object) -> tuple[int, float, float, int]:
    """(kind, timeout, idle, max_bytes) for the C core; TypeError if
    ``policy`` is none of the four."""
    if isinstance(policy, Graceful):
        return GRACEFUL, 0.0, 0.0, 0
    if isinstance(policy, Abortive):
        return ABORTIVE, 0.0, 0.0, 0
    if isinstance(policy, Linger):
        return LINGER, policy.timeout, 0.0, 0
    if isinstance(policy, Drain):
        return DRAIN, policy.timeout, policy.idle or 0.0, policy.max_bytes or 0
    raise TypeError(
        f"policy must be Graceful(), Abortive(), Linger(t) or Drain(...), "
        f"not {type(policy).__name__}"
    )


# The raw family and type of a socket object, ints (socket.socket's own
# properties build enums: ten times slower; CPython keeps the type without
# SOCK_NONBLOCK/SOCK_CLOEXEC).
_family = _socket.socket.family.__get__
_type = _socket.socket.type.__get__
_INET = (socket.AF_INET, getattr(socket, "AF_INET6", -1))
_STREAM = socket.SOCK_STREAM


def check_stream(kind: int, owner: socket.socket | None) -> None:
    """ValueError if Linger or Drain is asked of a socket object that is no
    stream socket (an int handle is asked SO_TYPE by the core)."""
    if kind >= LINGER and owner is not None and _type(owner) != _STREAM:
        raise ValueError("Linger and Drain need a stream (TCP) socket")


# -- the fast path: Graceful and Abortive --------------------------------------------

_ps_close_fast = lib.ps_close_fast
_ffi_new = ffi.new
_RESULT_P = ffi.typeof("ps_result *")
_SOCKET = socket.socket
_CLOSE_TCP = lib.PS_CLOSE_TCP
# The fast path's ps_result structs, per thread (a struct shared between
# threads would be a data race under free-threaded CPython).  A struct is
# taken out of its thread's pool while in use, so a signal handler that
# closes another socket on the same thread gets its own.
_scratch = threading.local()
# (how, acked) by ps_close_fast's flags: how | (acked + 1) << 1.
_FLAGS = tuple((HOWS[f & 1], _ACKED[f >> 1]) for f in range(6))


def close_now(sock: socket.socket | int, abortive: int) -> CloseResult:
    """Graceful (``abortive`` 0) or Abortive (1, ``PS_CLOSE_ABORTIVE``):
    one call into the core, the fast path."""
    if isinstance(sock, _SOCKET):
        fd = sock.fileno()
        owner: socket.socket | None = sock
        if fd == -1:
            handle(sock)  # raises
        if not abortive and _family(sock) in _INET and _type(sock) == _STREAM:
            abortive = _CLOSE_TCP  # Graceful: one question fewer (Linux)
    else:
        fd, owner = handle(sock)
    try:
        pool = _scratch.pool
    except AttributeError:
        pool = _scratch.pool = []
    res = pool.pop() if pool else _ffi_new(_RESULT_P)
    try:
        flags = _ps_close_fast(fd, abortive, res)
        if flags >= 0 and owner is not None:
            owner.detach()
    except BaseException:
        # A signal handler raised around the call: detach iff the handle
        # was freed.
        if owner is not None and res.closed and owner.fileno() != -1:
            owner.detach()
        raise
    if flags < 0:
        _fail(res.err)
    how, acked = _FLAGS[flags]
    result: CloseResult = _new(CloseResult)
    _set_how(result, how)
    _set_reason(result, "closed")
    _set_peer_eof(result, False)
    _set_drained(result, 0)
    _set_elapsed(result, res.elapsed)
    _set_acked(result, acked)
    pool.append(res)
    return result


# -- ops that wait: Linger, Drain, drain-only -----------------------------------------


def _run(ops: Any, owners: Sequence[socket.socket | None]) -> None:
    """Drive started ops to the end on one engine (one readiness set, one
    wait), detaching each socket object as soon as its handle is freed.

    If a signal handler raises, the exception propagates; an op whose handle
    was not freed yet stays owned by its socket object."""
    n = len(owners)
    freed = ffi.new("size_t[]", n)
    nfreed = ffi.new("size_t *")
    err = ffi.new("ps_error *")
    engine = lib.ps_engine_new(ops, n)
    if engine == ffi.NULL:
        raise MemoryError("pysock: out of memory for the close engine")
    try:
        while True:
            nfreed[0] = 0
            pending = lib.ps_engine_run(engine, SLICE_MS, freed, nfreed, err)
            for j in range(nfreed[0]):
                owner = owners[freed[j]]
                if owner is not None:
                    owner.detach()
            if pending == _FAIL:
                _fail(err)
            if pending == 0:
                break
    finally:
        lib.ps_engine_free(engine)
        for i, owner in enumerate(owners):
            if owner is None or owner.fileno() == -1:
                continue
            if ops[i].res.closed:  # only after an exception
                owner.detach()
            elif ops[i].setup:
                # Still open (it failed, or a signal handler raised): Windows
                # left it blocking; give it back the mode its object says.
                owner.settimeout(owner.gettimeout())
    for i in range(n):
        if ops[i].phase == _FAIL:
            _fail(ops[i].res.err)


def _start(
    op: Any, fd: int, owner: socket.socket | None, kind: int, timeout: float, idle: float, cap: int
) -> None:
    """The core's op start.  A socket object's type is known (checked by
    check_stream), so no SO_TYPE for it: the op's first system call fails on
    a descriptor closed behind the object's back, before anything is shut
    down or closed.  An int handle is asked SO_TYPE."""
    start = lib.ps_op_start if owner is None else lib.ps_op_start_stream
    if start(op, fd, kind, timeout, idle, cap) == _FAIL:
        _fail(op[0].res.err)


def close_op(
    fd: int, owner: socket.socket | None, kind: int, timeout: float, idle: float, cap: int
) -> CloseResult:
    """Linger or Drain (op_args' values) of one handle, to the end."""
    op = ffi.new("ps_op[1]")
    _start(op, fd, owner, kind, timeout, idle, cap)
    _run(op, [owner])
    return to_result(op[0].res)


def close_ops(
    handles: Sequence[tuple[int, socket.socket | None]],
    kind: int,
    timeout: float,
    idle: float,
    cap: int,
) -> list[CloseResult]:
    """Close every (descriptor, owner) by one policy with one wait; results
    in input order.  Every handle is started first, each asked SO_TYPE (also
    a socket object's): a bad one raises before anything is shut down."""
    n = len(handles)
    ops = ffi.new("ps_op[]", n)
    for i, (fd, _) in enumerate(handles):
        if lib.ps_op_start(ops + i, fd, kind, timeout, idle, cap) == _FAIL:
            _fail(ops[i].res.err)
    _run(ops, [owner for _, owner in handles])
    return [to_result(ops[i].res) for i in range(n)]


def drain_op(
    fd: int, owner: socket.socket | None, timeout: float, idle: float, cap: int
) -> DrainResult:
    """Read and discard until EOF or a limit; the handle stays open."""
    op = ffi.new("ps_op[1]")
    _start(op, fd, owner, lib.PS_DRAIN_ONLY, timeout, idle, cap)
    try:
        _run(op, [None])
    finally:
        if owner is not None:
            # Windows: the core leaves the socket blocking (also when the
            # drain failed); restore the object's own mode.
            owner.settimeout(owner.gettimeout())
    res = op[0].res
    return DrainResult(
        drained=int(res.drained),
        eof=bool(res.peer_eof),
        reason=REASONS[res.reason],
        elapsed=float(res.elapsed),
    )


# -- options ------------------------------------------------------------------------


def shutdown_handle(fd: int, how: int) -> None:
    """shutdown(2) with a PS_SHUT_* direction (SHUTDOWN's values)."""
    err = ffi.new("ps_error *")
    if lib.ps_shutdown(fd, how, err) != _DONE:
        _fail(err)


def get_linger_option(fd: int) -> tuple[bool, int]:
    """The kernel's SO_LINGER: (enabled, seconds)."""
    enabled = ffi.new("int *")
    seconds = ffi.new("int *")
    err = ffi.new("ps_error *")
    if lib.ps_get_linger(fd, enabled, seconds, err) != _DONE:
        _fail(err)
    return bool(enabled[0]), int(seconds[0])


def set_linger_option(fd: int, enabled: bool, seconds: int) -> None:
    """Set the kernel's SO_LINGER (seconds checked by the caller)."""
    err = ffi.new("ps_error *")
    if lib.ps_set_linger(fd, int(enabled), seconds, err) != _DONE:
        _fail(err)


# -- the native reaper ------------------------------------------------------------------

_OP_P = ffi.typeof("ps_op *")
_op_start = lib.ps_op_start
_submit_op = lib.ps_reaper_submit_op
_addressof = ffi.addressof
_REAPER_CLOSED = lib.PS_REAPER_CLOSED
_RECLAIM_REPORT = lib.PS_REAPER_RECLAIM_REPORT


def start_op(fd: int, kind: int, timeout: float, idle: float, cap: int) -> Any:
    """A started Linger or Drain op for :meth:`NativeReaper.submit`: the
    core validates here (SO_TYPE: a descriptor that is no longer a socket is
    refused, untouched) and raises."""
    op = _ffi_new(_OP_P)
    if _op_start(op, fd, kind, timeout, idle, cap) == _FAIL:
        _fail(op.res.err)
    return op


def handed_over(op: Any) -> bool:
    """Whether the reaper took the op's handle (ps_reaper_submit_op marks
    the caller's op; true even if something raised right after the call)."""
    return bool(op.phase == _DONE)


def fd_ceiling(reserve_min: int, reserve_div: int, default_soft: int) -> int:
    """The descriptor ceiling for a reserve, computed by the core as its
    reaper thread does (0: none)."""
    return int(lib.ps_reaper_fd_ceiling(reserve_min, reserve_div, default_soft))


def background_thread() -> None:
    """Lower the calling thread's priority below the process's other
    threads, as the native reaper thread does for itself."""
    lib.ps_background_thread()


class NativeStats(NamedTuple):
    """The native reaper's counts (ps_reaper_stats)."""

    submitted: int  # accepted by submit
    done: int  # completed with a result (reclaimed included)
    failed: int  # completed with an error (or dropped: out of memory)
    reclaimed: int  # of done: ended by a reclaim or the cap
    in_flight: int  # submitted, not yet completed
    waiting: int  # completions not yet harvested
    capacity: int  # op slots allocated now
    max_in_flight: int  # the cap, 0 = none


Outcome = CloseResult | int | Exception  # a close's result or error; a reclaim's count


class NativeReaper:
    """The C core's reaper (``csrc/reaper.c``): a native thread over a
    long-lived engine, its submission and completion queues, its counts.
    Thread-safe as ``ps_reaper_*`` is, except that :meth:`free` and the
    ``fork_*`` calls must not race other calls."""

    __slots__ = ("_out", "_r", "_size")

    def __init__(self, capacity: int, max_in_flight: int, batch: int) -> None:
        """``capacity``: op slots to begin with (they grow); ``max_in_flight``:
        the cap, 0 for none; ``batch``: completions per :meth:`harvest`."""
        err = ffi.new("ps_error *")
        r = lib.ps_reaper_new(capacity, max_in_flight, err)
        if r == ffi.NULL:
            _fail(err)
        self._r = r
        self._size = batch
        self._out = ffi.new("ps_completion[]", batch)

    def set_fd_limit(self, reserve_min: int, reserve_div: int, default_soft: int) -> None:
        """Reclaim when the closes in flight would pass the descriptor
        ceiling (see :func:`fd_ceiling`)."""
        lib.ps_reaper_set_fd_limit(self._r, reserve_min, reserve_div, default_soft)

    def submit(self, op: Any, token: int) -> bool:
        """Queue a started op (:func:`start_op`) under ``token``.  True: the
        handle is the reaper's now; False: the reaper takes no new work
        (nothing touched).  Raises if the core refused the op (out of
        memory); the handle is then still the caller's."""
        errp = _addressof(op.res, "err")  # op is copied into the queue: reused for errors
        rc = _submit_op(self._r, op, token, errp)
        if rc == _DONE:
            return True
        if rc == _REAPER_CLOSED:
            return False
        _fail(errp)

    def wait(self, ms: int) -> int:
        """Without the GIL: until completions wait (how many), ``ms`` pass
        (0; ``ms < 0``: no limit), or the thread stopped with none waiting
        (-1)."""
        return int(lib.ps_reaper_wait(self._r, ms))

    def harvest(self) -> int:
        """Move up to ``batch`` completions into this wrapper; how many."""
        return int(lib.ps_reaper_harvest(self._r, self._out, self._size))

    def outcomes(self, first: int, end: int) -> list[tuple[int, Outcome]]:
        """(token, outcome) of harvested completions ``first`` to ``end``:
        a CloseResult, an exception, or (for a reclaim request's answer) how
        many were reclaimed."""
        out = self._out
        items: list[tuple[int, Outcome]] = []
        for j in range(first, end):
            c = out[j]
            status = c.status
            if status == _DONE:
                items.append((c.token, to_result(c.res)))
            elif status == _RECLAIM_REPORT:
                items.append((c.token, int(c.res.drained)))
            else:
                items.append((c.token, _error(c.res.err)))
        return items

    def reclaim_async(self, n: int, token: int) -> bool:
        """Ask the thread to reclaim the ``n`` oldest closes (0: nginx's
        share); its answer comes as a completion under ``token``.  False if
        the reaper has stopped (no answer will come)."""
        rc = lib.ps_reaper_reclaim_async(self._r, n, token)
        if rc == _FAIL:
            raise MemoryError("pysock: out of memory for the reaper's reclaim request")
        return bool(rc == _DONE)

    def close(self, timeout: float | None) -> None:
        """No new work; what is in flight finishes by its policy until
        ``timeout`` (None: no limit), then is aborted; joins the thread
        (without the GIL)."""
        lib.ps_reaper_close(self._r, -1.0 if timeout is None else float(timeout))

    def stats(self) -> NativeStats:
        out = ffi.new("ps_reaper_stats *")
        lib.ps_reaper_get_stats(self._r, out)
        return NativeStats(
            int(out.submitted),
            int(out.done),
            int(out.failed),
            int(out.reclaimed),
            int(out.in_flight),
            int(out.waiting),
            int(out.capacity),
            int(out.max_in_flight),
        )

    def free(self) -> None:
        """Free everything (no call may follow)."""
        lib.ps_reaper_free(self._r)

    def fork_prepare(self) -> None:
        """Before fork(): park the thread at a safe point, hold the lock."""
        lib.ps_reaper_fork_prepare(self._r)

    def fork_parent(self) -> None:
        lib.ps_reaper_fork_parent(self._r)

    def fork_child(self) -> None:
        """In the child: close the child's copies of the handles held, and
        stop (free it next)."""
        lib.ps_reaper_fork_child(self._r)
