"""Errors: portable codes from the C core become the OSError subclasses
Python programmers already catch (DESIGN section 5), in one table."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, NoReturn

from pysock._core import lib

__all__ = ["NotASocketError", "NotConnectedError", "raise_error"]


class NotASocketError(OSError):
    """The handle is not an open socket (EBADF, ENOTSOCK, WSAENOTSOCK).

    A descriptor that is not a socket is never closed."""


class NotConnectedError(OSError):
    """The socket is not connected (ENOTCONN, WSAENOTCONN)."""


# portable code -> (exception class, POSIX errno)
_TABLE: dict[int, tuple[type[OSError], int]] = {
    lib.PS_ENOTSOCK: (NotASocketError, errno.ENOTSOCK),
    lib.PS_ECONNRESET: (ConnectionResetError, errno.ECONNRESET),
    lib.PS_ECONNABORTED: (ConnectionAbortedError, errno.ECONNABORTED),
    lib.PS_ENOTCONN: (NotConnectedError, errno.ENOTCONN),
    lib.PS_EWOULDBLOCK: (BlockingIOError, errno.EAGAIN),
    lib.PS_EINTR: (InterruptedError, errno.EINTR),
    lib.PS_ENETDOWN: (OSError, errno.ENETDOWN),
    lib.PS_EINVAL: (OSError, errno.EINVAL),
}

_STEPS = {
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
}

_WINDOWS = sys.platform == "win32"


def raise_error(err: Any) -> NoReturn:
    """Raise the exception for a C ``ps_error``."""
    code, oserr, step = int(err.code), int(err.oserr), _STEPS.get(int(err.step), "?")
    if code == lib.PS_ENOTSTREAM:
        raise ValueError("Linger and Drain need a stream (TCP) socket")
    if code == lib.PS_ENOMEM:
        raise MemoryError(f"out of memory in pysock ({step})")
    cls, posix = _TABLE.get(code, (OSError, oserr))
    if _WINDOWS and oserr:
        # As CPython does: winerror set, errno derived from it.
        raise cls(None, f"{step} failed", None, oserr)
    raise cls(posix, f"{os.strerror(posix)} ({step})")
