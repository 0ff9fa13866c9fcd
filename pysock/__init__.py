"""pysock: shut down and close TCP connections correctly and fast.

Graceful, abortive, linger-with-timeout and lingering-close ("drain")
policies, the same on Winsock and POSIX.  The contract: docs/design.md.
"""

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from pysock._api import abort, close, close_many, drain, get_linger, set_linger, shutdown
from pysock._errors import NotASocketError, NotConnectedError, ReaperClosedError
from pysock._reaper import Reaper, ReaperStats, default_reaper
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
