"""pysock: shut down and close TCP connections correctly and fast.

Graceful, abortive, linger-with-timeout and lingering-close ("drain")
policies, the same on Winsock and POSIX.  See DESIGN.md for the contract.
"""

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

try:
    import pysock._core  # noqa: F401
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

from pysock._api import abort, close, close_many, drain, get_linger, set_linger, shutdown
from pysock._errors import NotASocketError, NotConnectedError
from pysock._reaper import Reaper, ReaperClosedError, ReaperStats, default_reaper
from pysock._types import (
    DEFAULT_DRAIN_IDLE,
    DEFAULT_DRAIN_TIMEOUT,
    Abortive,
    CloseResult,
    Drain,
    DrainResult,
    Graceful,
    Linger,
    LingerOption,
    Policy,
)

if TYPE_CHECKING:
    from pysock import aio


def __getattr__(name: str) -> ModuleType:
    # pysock.aio is imported on first use, so that `import pysock` does not
    # import asyncio.
    if name == "aio":
        return importlib.import_module("pysock.aio")
    raise AttributeError(f"module 'pysock' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DRAIN_IDLE",
    "DEFAULT_DRAIN_TIMEOUT",
    "Abortive",
    "CloseResult",
    "Drain",
    "DrainResult",
    "Graceful",
    "Linger",
    "LingerOption",
    "NotASocketError",
    "NotConnectedError",
    "Policy",
    "Reaper",
    "ReaperClosedError",
    "ReaperStats",
    "abort",
    "aio",
    "close",
    "close_many",
    "default_reaper",
    "drain",
    "get_linger",
    "set_linger",
    "shutdown",
]
