"""Policies and results: small frozen value objects (docs/design.md,
Policies and Results)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

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
    "Policy",
]

#: Drain's total deadline: nginx's ``lingering_time`` (30 s).
DEFAULT_DRAIN_TIMEOUT = 30.0
#: Drain's idle timer: nginx's ``lingering_timeout`` (5 s).
DEFAULT_DRAIN_IDLE = 5.0

How = Literal["graceful", "abortive"]
Reason = Literal[
    "closed", "eof", "timeout", "idle", "max_bytes", "reset", "not_connected", "reclaimed"
]


def _seconds(name: str, value: object) -> float:
    """A finite number of seconds > 0, else TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be finite and > 0 (0 is Abortive), got {value!r}")
    if seconds > 1e9:
        raise ValueError(f"{name} is too large: {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Graceful:
    """Clear SO_LINGER and close: FIN after queued data, in the background."""


@dataclass(frozen=True, slots=True)
class Abortive:
    """SO_LINGER {1, 0} and close: the peer gets RST; data is dropped."""


@dataclass(frozen=True, slots=True)
class Linger:
    """Wait up to ``timeout`` seconds for our data and FIN to be acknowledged,
    then close; abort (RST) at the deadline."""

    timeout: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeout", _seconds("timeout", self.timeout))


@dataclass(frozen=True, slots=True)
class Drain:
    """Lingering close: shutdown(send), read and discard until the peer's EOF,
    the total ``timeout``, ``idle`` seconds without data, or ``max_bytes``;
    then close (RST only if a limit ended it).

    Defaults are nginx's timers (30 s total, 5 s idle) and no byte cap:
    ``max_bytes=None``.  gunicorn caps at 64 KiB; a cap that is hit resets the
    connection, so set one only to bound what a hostile peer may make you read.
    ``idle=None`` turns the idle timer off."""

    timeout: float = DEFAULT_DRAIN_TIMEOUT
    max_bytes: int | None = None
    idle: float | None = DEFAULT_DRAIN_IDLE

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeout", _seconds("timeout", self.timeout))
        if self.idle is not None:
            object.__setattr__(self, "idle", _seconds("idle", self.idle))
        cap = self.max_bytes
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, int):
                raise TypeError(f"max_bytes must be an int or None, not {type(cap).__name__}")
            if cap <= 0 or cap >= 2**63:
                raise ValueError(f"max_bytes must be a positive int, got {cap!r}")


Policy = Graceful | Abortive | Linger | Drain


@dataclass(frozen=True, slots=True)
class CloseResult:
    """What a close did, and what the peer will have seen."""

    how: How
    reason: Reason
    peer_eof: bool
    drained: int
    elapsed: float
    acked: bool | None


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What :func:`pysock.drain` read and why it stopped."""

    drained: int
    eof: bool
    reason: Reason
    elapsed: float


@dataclass(frozen=True, slots=True)
class LingerOption:
    """The kernel's SO_LINGER option."""

    enabled: bool
    seconds: int
