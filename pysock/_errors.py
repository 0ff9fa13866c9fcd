"""Errors: every exception pysock raises of its own, and the one table that
turns the C core's portable error codes into the OSError subclasses Python
programmers already catch (docs/design.md, Errors).

The codes reach this module by name (``"ENOTSOCK"``, ...): the binding
(:mod:`pysock._binding`) reads a ``ps_error`` and names its code, so nothing
here touches the C core.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import NoReturn

__all__ = [
    "NotASocketError",
    "NotConnectedError",
    "ReaperClosedError",
    "make_error",
    "raise_error",
]


class NotASocketError(OSError):
    """The handle is not an open socket (EBADF, ENOTSOCK, WSAENOTSOCK).

    A descriptor that is not a socket is never closed."""


class NotConnectedError(OSError):
    """The socket is not connected (ENOTCONN, WSAENOTCONN)."""


class ReaperClosedError(RuntimeError):
    """The reaper was closed (or belongs to the parent of a forked process)
    and takes no new work."""


# The C core's portable code (ps_error.code, by name) -> (exception class,
# the POSIX errno used when the OS gave none).  ENOTSTREAM and ENOMEM are no
# OS errors (see make_error); any other code is a plain OSError.
TABLE: dict[str, tuple[type[OSError], int]] = {
    "ENOTSOCK": (NotASocketError, errno.ENOTSOCK),
    "ECONNRESET": (ConnectionResetError, errno.ECONNRESET),
    "ECONNABORTED": (ConnectionAbortedError, errno.ECONNABORTED),
    "ENOTCONN": (NotConnectedError, errno.ENOTCONN),
    "EWOULDBLOCK": (BlockingIOError, errno.EAGAIN),
    "EINTR": (InterruptedError, errno.EINTR),
    "ENETDOWN": (OSError, errno.ENETDOWN),
    "EINVAL": (OSError, errno.EINVAL),
}
#: The codes that are not OS errors.
NOT_OS_ERRORS = ("ENOTSTREAM", "ENOMEM")

_WINDOWS = sys.platform == "win32"


def make_error(code: str, oserr: int, step: str) -> Exception:
    """The exception for a failed step of the C core: ``code`` the portable
    code's name, ``oserr`` the OS's own error (errno, or the WSA code on
    Windows; 0 when the OS gave none), ``step`` the system call that failed.

    POSIX: ``errno`` is the OS's own where it gave one (a closed descriptor
    says EBADF whether it came as an int or a closed socket object), the
    table's only when it gave none (a bad argument: EINVAL).  Windows, as
    CPython does: ``winerror`` set, ``errno`` derived from it."""
    if code == "ENOTSTREAM":
        return ValueError("Linger and Drain need a stream (TCP) socket")
    if code == "ENOMEM":
        return MemoryError(f"out of memory in pysock ({step})")
    cls, posix = TABLE.get(code, (OSError, oserr))
    if _WINDOWS and oserr:
        return cls(None, f"{step} failed", None, oserr)
    number = oserr or posix
    return cls(number, f"{os.strerror(number)} ({step})")


def raise_error(code: str, oserr: int, step: str) -> NoReturn:
    """Raise :func:`make_error`'s exception."""
    raise make_error(code, oserr, step)
