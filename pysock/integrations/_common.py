"""What every server integration shares: the policy, the record of each close,
and the check that the server (and the internals it reaches into) are there."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import socket
import threading
from types import ModuleType

from pysock._types import CloseResult, Drain, Policy

__all__ = [
    "DEFAULT_POLICY",
    "IntegrationStats",
    "bytes_waiting",
    "configure",
    "policy",
    "record",
    "require",
    "reset_stats",
    "stats",
]

log = logging.getLogger("pysock.integrations")

#: nginx's timers (``lingering_time`` 30 s, ``lingering_timeout`` 5 s) and a
#: 64 MiB cap on what one connection can make the server read and discard.
#: What a hostile uploader costs under it: one descriptor for at most 30 s,
#: and at most 64 MiB read through ``recv(MSG_TRUNC)`` (on Linux no copy: a
#: few milliseconds of CPU); an honest client whose upload is larger than the
#: cap gets a reset (its response may be cut), so the cap sits well above the
#: uploads a server refuses early in practice.
DEFAULT_POLICY = Drain(timeout=30.0, idle=5.0, max_bytes=64 * 1024 * 1024)

_ENV = {
    "PYSOCK_DRAIN_TIMEOUT": "timeout",
    "PYSOCK_DRAIN_IDLE": "idle",
    "PYSOCK_DRAIN_MAX_BYTES": "max_bytes",
}


def _from_environment() -> Policy:
    """DEFAULT_POLICY with any ``PYSOCK_DRAIN_*`` variable applied."""
    values: dict[str, float | int | None] = {
        "timeout": DEFAULT_POLICY.timeout,
        "idle": DEFAULT_POLICY.idle,
        "max_bytes": DEFAULT_POLICY.max_bytes,
    }
    for var, field in _ENV.items():
        text = os.environ.get(var)
        if text is None or text == "":
            continue
        try:
            if field == "max_bytes":
                values[field] = None if text.lower() == "none" else int(text)
            else:
                values[field] = float(text)
        except ValueError:
            raise ValueError(f"{var}={text!r} is not a number") from None
    return Drain(**values)  # type: ignore[arg-type]


_lock = threading.Lock()
_policy: Policy | None = None


def policy() -> Policy:
    """The policy the integrations close with: :func:`configure`'s, else
    DEFAULT_POLICY with the ``PYSOCK_DRAIN_TIMEOUT``, ``PYSOCK_DRAIN_IDLE`` and
    ``PYSOCK_DRAIN_MAX_BYTES`` environment variables applied (read once)."""
    global _policy
    with _lock:
        if _policy is None:
            _policy = _from_environment()
        return _policy


def configure(policy: Policy | None = None) -> None:
    """Set the policy every integration in this process uses (None: back to
    the default and the environment)."""
    from pysock._binding import op_args

    global _policy
    if policy is not None:
        op_args(policy)  # a TypeError for anything that is not a policy
    with _lock:
        _policy = policy


@dataclasses.dataclass(frozen=True)
class IntegrationStats:
    """What the integrations' closes in this process came to."""

    closes: int  #: lingering closes finished
    graceful: int  #: of them, ended by the FIN sequence (nothing of ours lost)
    abortive: int  #: of them, ended with RST (a limit hit, reclaimed or reset)
    errors: int  #: closes that raised instead of returning a result
    drained: int  #: request bytes read and discarded, in all
    reasons: dict[str, int]  #: closes by CloseResult.reason


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closes = self.graceful = self.abortive = self.errors = self.drained = 0
        self.reasons: dict[str, int] = {}


_counters = _Counters()


def record(server: str, outcome: CloseResult | BaseException) -> None:
    """Count one close and log it at debug level (``pysock.integrations``)."""
    c = _counters
    if isinstance(outcome, BaseException):
        with c.lock:
            c.errors += 1
        log.debug("%s: lingering close failed: %r", server, outcome)
        return
    with c.lock:
        c.closes += 1
        if outcome.how == "graceful":
            c.graceful += 1
        else:
            c.abortive += 1
        c.drained += outcome.drained
        c.reasons[outcome.reason] = c.reasons.get(outcome.reason, 0) + 1
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s: %s/%s, drained %d bytes in %.3f s",
            server,
            outcome.how,
            outcome.reason,
            outcome.drained,
            outcome.elapsed,
        )


def stats() -> IntegrationStats:
    """A snapshot of the counters."""
    c = _counters
    with c.lock:
        return IntegrationStats(
            closes=c.closes,
            graceful=c.graceful,
            abortive=c.abortive,
            errors=c.errors,
            drained=c.drained,
            reasons=dict(c.reasons),
        )


def reset_stats() -> None:
    """Set every counter back to zero."""
    c = _counters
    with c.lock:
        c.closes = c.graceful = c.abortive = c.errors = c.drained = 0
        c.reasons = {}


def require(module: str, extra: str, *, attributes: tuple[str, ...] = ()) -> ModuleType:
    """Import ``module`` (the server) or raise an ImportError that names the
    extra to install; each of ``attributes`` (dotted paths inside the module
    that the integration relies on) must exist, else an ImportError says which
    is missing: never a silent fall back to the server's plain close."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"pysock.integrations.{extra} needs {module}: pip install 'pysock-linger[{extra}]'"
        ) from exc
    for path in attributes:
        obj: object = mod
        for part in path.split("."):
            if not hasattr(obj, part):
                version = getattr(mod, "__version__", "unknown version")
                raise ImportError(
                    f"pysock.integrations.{extra}: {module} {version} has no {path}, "
                    f"which this integration needs; install a tested version: "
                    f"pip install 'pysock-linger[{extra}]'"
                )
            obj = getattr(obj, part)
    return mod


def bytes_waiting(sock: socket.socket) -> bool:
    """True if the peer's bytes are waiting unread in ``sock``'s receive
    queue now (a peek; never blocks, consumes nothing).  An EOF, a reset or
    an empty queue: False."""
    flags = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
    try:
        return bool(sock.recv(1, flags))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False
