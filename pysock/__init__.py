"""pysock: shut down and close TCP connections correctly and fast.

Graceful, abortive, linger-with-timeout and lingering-close ("drain")
policies, the same on Winsock and POSIX.  See DESIGN.md for the contract.
"""

from pysock._api import abort, close, close_many, drain, get_linger, set_linger, shutdown
from pysock._errors import NotASocketError, NotConnectedError
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
    "abort",
    "close",
    "close_many",
    "drain",
    "get_linger",
    "set_linger",
    "shutdown",
]
