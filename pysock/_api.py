"""The public functions: close, abort, shutdown, drain, get/set_linger, close_many.

Python validates, the C core does every system call (without the GIL), and a
``socket.socket`` is detached exactly when its handle is freed.  Waiting runs
in C in slices of at most ``_SLICE_MS``: between slices, and at once when a
signal interrupts the wait, control is back in Python so signal handlers run
(PEP 475) and the wait resumes toward the same deadline.
"""

from __future__ import annotations

import _socket
import socket
import sys
import threading
from collections.abc import Iterable
from typing import Any

from pysock._core import ffi, lib
from pysock._errors import NotASocketError, raise_error
from pysock._types import (
    Abortive,
    CloseResult,
    Drain,
    DrainResult,
    Graceful,
    Linger,
    LingerOption,
    Policy,
)

__all__ = [
    "abort",
    "close",
    "close_many",
    "drain",
    "get_linger",
    "set_linger",
    "shutdown",
]

Socket = socket.socket | int

# The largest handle the OS can hand out: a POSIX descriptor is a C int; a
# Windows SOCKET is pointer-sized (passed as intptr_t).
_MAX_HANDLE = 2**63 - 1 if sys.platform == "win32" else 2**31 - 1

_SLICE_MS = 50
_DONE = lib.PS_DONE
_ps_close_fast = lib.ps_close_fast
_ffi_new = ffi.new
_RESULT_P = ffi.typeof("ps_result *")
_SOCKET = socket.socket
# The raw family and type of a socket object (socket.socket's own properties
# build enums: ten times slower).
_family = _socket.socket.family.__get__
_type = _socket.socket.type.__get__
_INET = (socket.AF_INET, getattr(socket, "AF_INET6", -1))
_STREAM = socket.SOCK_STREAM
_CLOSE_TCP = lib.PS_CLOSE_TCP

_GRACEFUL = Graceful()
_HOWS = ("graceful", "abortive")
_REASONS = (
    "closed",
    "eof",
    "timeout",
    "idle",
    "max_bytes",
    "reset",
    "not_connected",
    "reclaimed",
)
_SHUTDOWN = {
    "receive": lib.PS_SHUT_RECEIVE,
    "send": lib.PS_SHUT_SEND,
    "both": lib.PS_SHUT_BOTH,
    socket.SHUT_RD: lib.PS_SHUT_RECEIVE,
    socket.SHUT_WR: lib.PS_SHUT_SEND,
    socket.SHUT_RDWR: lib.PS_SHUT_BOTH,
}


def _start_winsock() -> None:
    code = lib.ps_init()
    if code:
        raise OSError(None, "WSAStartup failed", None, code)


ffi.init_once(_start_winsock, "ps_init")


def _handle(sock: object) -> tuple[int, socket.socket | None]:
    """(descriptor, owning socket object) for a socket.socket or an int."""
    if isinstance(sock, socket.socket):
        fd = sock.fileno()
        if fd == -1:
            raise NotASocketError(9, "socket object is closed")  # EBADF
        return fd, sock
    if isinstance(sock, bool) or not isinstance(sock, int):
        raise TypeError(f"expected a socket.socket or an int handle, not {type(sock).__name__}")
    if not 0 <= sock <= _MAX_HANDLE:
        raise ValueError(f"handle must be in 0..{_MAX_HANDLE}, got {sock}")
    return sock, None


def _op_args(policy: object) -> tuple[int, float, float, int]:
    """(kind, timeout, idle, max_bytes) for the C core."""
    if isinstance(policy, Graceful):
        return lib.PS_GRACEFUL, 0.0, 0.0, 0
    if isinstance(policy, Abortive):
        return lib.PS_ABORTIVE, 0.0, 0.0, 0
    if isinstance(policy, Linger):
        return lib.PS_LINGER, policy.timeout, 0.0, 0
    if isinstance(policy, Drain):
        return lib.PS_DRAIN, policy.timeout, policy.idle or 0.0, policy.max_bytes or 0
    raise TypeError(
        f"policy must be Graceful(), Abortive(), Linger(t) or Drain(...), "
        f"not {type(policy).__name__}"
    )


def _check_stream(kind: int, owner: socket.socket | None) -> None:
    if kind >= lib.PS_LINGER and owner is not None and owner.type != socket.SOCK_STREAM:
        raise ValueError("Linger and Drain need a stream (TCP) socket")


def _starter(owner: socket.socket | None) -> Any:
    """The core's op start: a socket object's type is known (checked by
    _check_stream), so no SO_TYPE for it; the op's first system call fails on
    a descriptor closed behind the object's back, before anything is shut
    down or closed.  An int handle is asked SO_TYPE."""
    return lib.ps_op_start if owner is None else lib.ps_op_start_stream


# CloseResult is a frozen dataclass; building one through its __init__ costs
# more than the close itself, so results are filled through the slots.
_new = object.__new__
_set_how, _set_reason, _set_peer_eof, _set_drained, _set_elapsed, _set_acked = (
    vars(CloseResult)[name].__set__
    for name in ("how", "reason", "peer_eof", "drained", "elapsed", "acked")
)
_ACKED = (None, False, True)  # indexed by the core's acked + 1


def _result(res: Any) -> CloseResult:
    result: CloseResult = _new(CloseResult)
    _set_how(result, _HOWS[res.how])
    _set_reason(result, _REASONS[res.reason])
    _set_peer_eof(result, res.peer_eof != 0)
    _set_drained(result, res.drained)
    _set_elapsed(result, res.elapsed)
    _set_acked(result, _ACKED[res.acked + 1])
    return result


def _run(ops: Any, owners: list[socket.socket | None]) -> None:
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
            pending = lib.ps_engine_run(engine, _SLICE_MS, freed, nfreed, err)
            for j in range(nfreed[0]):
                owner = owners[freed[j]]
                if owner is not None:
                    owner.detach()
            if pending == lib.PS_FAIL:
                raise_error(err)
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
        if ops[i].phase == lib.PS_FAIL:
            raise_error(ops[i].res.err)


# The fast path's ps_result structs, per thread (a struct shared between
# threads would be a data race under free-threaded CPython).  A struct is
# taken out of its thread's pool while in use, so a signal handler that
# closes another socket on the same thread gets its own.
_scratch = threading.local()
# (how, acked) by ps_close_fast's flags: how | (acked + 1) << 1.
_FLAGS = tuple((_HOWS[f & 1], _ACKED[f >> 1]) for f in range(6))


def _close_now(sock: Socket, abortive: int) -> CloseResult:
    """Graceful or Abortive: one call into the core, the fast path."""
    if isinstance(sock, _SOCKET):
        fd = sock.fileno()
        owner: socket.socket | None = sock
        if fd == -1:
            _handle(sock)  # raises
        if not abortive and _family(sock) in _INET and _type(sock) == _STREAM:
            abortive = _CLOSE_TCP  # Graceful: one question fewer (Linux)
    else:
        fd, owner = _handle(sock)
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
        raise_error(res.err)
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


def close(sock: Socket, policy: Policy = _GRACEFUL) -> CloseResult:
    """Shut down and close ``sock`` by ``policy``; see :class:`CloseResult`."""
    kind = type(policy)
    if kind is Graceful:
        return _close_now(sock, 0)
    if kind is Abortive:
        return _close_now(sock, 1)
    fd, owner = _handle(sock)
    code, timeout, idle, cap = _op_args(policy)
    if code <= lib.PS_ABORTIVE:  # a subclass of Graceful or Abortive
        return _close_now(sock, code)
    _check_stream(code, owner)
    op = ffi.new("ps_op[1]")
    if _starter(owner)(op, fd, code, timeout, idle, cap) == lib.PS_FAIL:
        raise_error(op[0].res.err)
    _run(op, [owner])
    return _result(op[0].res)


def abort(sock: Socket) -> CloseResult:
    """``close(sock, Abortive())``: the peer gets RST at once."""
    return _close_now(sock, 1)


def close_many(socks: Iterable[Socket], policy: Policy = _GRACEFUL) -> list[CloseResult]:
    """Close every socket by ``policy`` with one wait: the wall time is the
    slowest connection's, not the sum.  Results come in input order.

    Every handle is checked first (SO_TYPE, also for socket objects): a bad
    one raises before anything is closed or shut down."""
    handles = [_handle(s) for s in socks]
    if len({fd for fd, _ in handles}) != len(handles):
        raise ValueError("close_many got the same handle twice")
    kind, timeout, idle, cap = _op_args(policy)
    for _, owner in handles:
        _check_stream(kind, owner)
    n = len(handles)
    if n == 0:
        return []
    ops = ffi.new("ps_op[]", n)
    for i, (fd, _) in enumerate(handles):
        if lib.ps_op_start(ops + i, fd, kind, timeout, idle, cap) == lib.PS_FAIL:
            raise_error(ops[i].res.err)
    _run(ops, [owner for _, owner in handles])
    return [_result(ops[i].res) for i in range(n)]


def drain(
    sock: Socket, timeout: float, max_bytes: int | None = None, idle: float | None = None
) -> DrainResult:
    """Read and discard until EOF, ``timeout``, ``idle`` seconds without data or
    ``max_bytes``; the socket stays open (shut it down first if you mean to)."""
    fd, owner = _handle(sock)
    policy = Drain(timeout, max_bytes, idle)
    _check_stream(lib.PS_DRAIN, owner)
    op = ffi.new("ps_op[1]")
    if (
        _starter(owner)(
            op, fd, lib.PS_DRAIN_ONLY, policy.timeout, policy.idle or 0.0, policy.max_bytes or 0
        )
        == lib.PS_FAIL
    ):
        raise_error(op[0].res.err)
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
        reason=_REASONS[res.reason],  # type: ignore[arg-type]
        elapsed=float(res.elapsed),
    )


def shutdown(sock: Socket, how: str | int = "send") -> None:
    """shutdown(2): ``"send"``, ``"receive"``, ``"both"`` or ``socket.SHUT_*``."""
    fd, _ = _handle(sock)
    if isinstance(how, bool) or not isinstance(how, (str, int)):
        raise TypeError(f"how must be a str or socket.SHUT_*, not {type(how).__name__}")
    if how not in _SHUTDOWN:
        raise ValueError(f"how must be 'send', 'receive', 'both' or socket.SHUT_*, got {how!r}")
    err = ffi.new("ps_error *")
    if lib.ps_shutdown(fd, _SHUTDOWN[how], err) != lib.PS_DONE:
        raise_error(err)


def get_linger(sock: Socket) -> LingerOption:
    """The kernel's SO_LINGER option (seconds, on macOS too)."""
    fd, _ = _handle(sock)
    enabled = ffi.new("int *")
    seconds = ffi.new("int *")
    err = ffi.new("ps_error *")
    if lib.ps_get_linger(fd, enabled, seconds, err) != lib.PS_DONE:
        raise_error(err)
    return LingerOption(enabled=bool(enabled[0]), seconds=int(seconds[0]))


def set_linger(sock: Socket, enabled: bool, seconds: int = 0) -> None:
    """Set the kernel's SO_LINGER option; ``seconds`` in 0..65535."""
    fd, _ = _handle(sock)
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, not {type(enabled).__name__}")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TypeError(f"seconds must be an int, not {type(seconds).__name__}")
    if not 0 <= seconds <= 65535:
        raise ValueError(f"seconds must be in 0..65535, got {seconds}")
    err = ffi.new("ps_error *")
    if lib.ps_set_linger(fd, int(enabled), seconds, err) != lib.PS_DONE:
        raise_error(err)
