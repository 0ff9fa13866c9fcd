"""The public functions: close, abort, shutdown, drain, get/set_linger, close_many.

Each validates its arguments and hands the work to the binding
(:mod:`pysock._binding`), which calls the C core.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from pysock._binding import (
    ABORTIVE,
    DRAIN,
    SHUTDOWN,
    check_stream,
    close_now,
    close_op,
    close_ops,
    drain_op,
    get_linger_option,
    handle,
    op_args,
    set_linger_option,
    shutdown_handle,
)
from pysock._types import (
    Abortive,
    CloseResult,
    Drain,
    DrainResult,
    Graceful,
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

_GRACEFUL = Graceful()


def close(sock: Socket, policy: Policy = _GRACEFUL) -> CloseResult:
    """Shut down and close ``sock`` by ``policy``; see :class:`CloseResult`."""
    kind = type(policy)
    if kind is Graceful:
        return close_now(sock, 0)
    if kind is Abortive:
        return close_now(sock, 1)
    fd, owner = handle(sock)
    code, timeout, idle, cap = op_args(policy)
    if code <= ABORTIVE:  # a subclass of Graceful or Abortive
        return close_now(sock, code == ABORTIVE)
    check_stream(code, owner)
    return close_op(fd, owner, code, timeout, idle, cap)


def abort(sock: Socket) -> CloseResult:
    """``close(sock, Abortive())``: the peer gets RST at once."""
    return close_now(sock, 1)


def close_many(socks: Iterable[Socket], policy: Policy = _GRACEFUL) -> list[CloseResult]:
    """Close every socket by ``policy`` with one wait: the wall time is the
    slowest connection's, not the sum.  Results come in input order.

    Every handle is checked first (SO_TYPE, also for socket objects): a bad
    one raises before anything is closed or shut down."""
    handles = [handle(s) for s in socks]
    if len({fd for fd, _ in handles}) != len(handles):
        raise ValueError("close_many got the same handle twice")
    kind, timeout, idle, cap = op_args(policy)
    for _, owner in handles:
        check_stream(kind, owner)
    if not handles:
        return []
    return close_ops(handles, kind, timeout, idle, cap)


def drain(
    sock: Socket, timeout: float, max_bytes: int | None = None, idle: float | None = None
) -> DrainResult:
    """Read and discard until EOF, ``timeout``, ``idle`` seconds without data or
    ``max_bytes``; the socket stays open (shut it down first if you mean to)."""
    fd, owner = handle(sock)
    policy = Drain(timeout, max_bytes, idle)
    check_stream(DRAIN, owner)
    return drain_op(fd, owner, policy.timeout, policy.idle or 0.0, policy.max_bytes or 0)


def shutdown(sock: Socket, how: str | int = "send") -> None:
    """shutdown(2): ``"send"``, ``"receive"``, ``"both"`` or ``socket.SHUT_*``."""
    fd, _ = handle(sock)
    if isinstance(how, bool) or not isinstance(how, (str, int)):
        raise TypeError(f"how must be a str or socket.SHUT_*, not {type(how).__name__}")
    if how not in SHUTDOWN:
        raise ValueError(f"how must be 'send', 'receive', 'both' or socket.SHUT_*, got {how!r}")
    shutdown_handle(fd, SHUTDOWN[how])


def get_linger(sock: Socket) -> LingerOption:
    """The kernel's SO_LINGER option (seconds, on macOS too)."""
    fd, _ = handle(sock)
    enabled, seconds = get_linger_option(fd)
    return LingerOption(enabled=enabled, seconds=seconds)


def set_linger(sock: Socket, enabled: bool, seconds: int = 0) -> None:
    """Set the kernel's SO_LINGER option; ``seconds`` in 0..65535."""
    fd, _ = handle(sock)
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, not {type(enabled).__name__}")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TypeError(f"seconds must be an int, not {type(seconds).__name__}")
    if not 0 <= seconds <= 65535:
        raise ValueError(f"seconds must be in 0..65535, got {seconds}")
    set_linger_option(fd, enabled, seconds)
