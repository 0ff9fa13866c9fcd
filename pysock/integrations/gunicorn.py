"""gunicorn worker classes that close connections with a lingering close.

Turn it on with gunicorn's own worker-class setting::

    gunicorn -k pysock.integrations.gunicorn.SyncWorker app:app
    gunicorn -k pysock.integrations.gunicorn.ThreadWorker --threads 4 app:app

Everything else is gunicorn's (keep-alive, its body drain on kept-alive
connections, timeouts, graceful shutdown, configuration); the policy comes
from :func:`pysock.integrations.policy` (``PYSOCK_DRAIN_*`` in the
environment), each close's result from :func:`pysock.integrations.stats` in
the worker process and the ``pysock.integrations`` logger at debug level.

Where gunicorn closes, and what this changes (checked against gunicorn
26.0.0, 26.2.0, 27.0.0 and 27.0.1):

- Every close of a connection whose request may have left bytes unread goes
  through ``gunicorn.util.close_graceful`` (shutdown, read at most 64 KiB or
  2 s, close: past that cap the kernel resets the connection and the client
  loses the response's tail).  ``SyncWorker.handle`` calls it after every
  request; ``gthread``'s ``TConn.close(graceful=True)`` calls it from
  ``ThreadWorker.finish_request`` on the worker's main thread (the poller:
  gunicorn's own drain blocks it for up to 2 s); both workers'
  ``handle_request`` call it when an application fails after the headers
  went out.  In the worker process (never in the arbiter) this module
  replaces ``gunicorn.util.close_graceful`` with a hand-over to
  :func:`pysock.default_reaper`: the lingering close runs on the reaper's
  thread and no gunicorn thread waits for it.  Reaching into
  ``gunicorn.util`` is this module's one dependence on internals; at import
  it checks that the functions above still call ``close_graceful`` and raises
  ImportError if not.
- The closes gunicorn does with ``util.close`` stay as they are: kept-alive
  and pending connections that timed out idle, with no request in progress
  (nginx closes those without lingering too).

Why the Reaper for the sync worker too, where gunicorn blocks: a sync worker
is one process serving one connection at a time, and its arbiter kills a
worker that does not check in for ``--timeout`` seconds (30 by default, the
same as the default drain deadline).  A blocking drain as long as the policy
allows would hold the worker and could get it killed; on the reaper's thread
it holds neither.

Shutdown: when gunicorn's own graceful shutdown is over (SIGTERM, max
requests), the worker waits for its lingering closes still in flight, at most
the policy's deadline and never past gunicorn's ``--graceful-timeout`` (after
which the arbiter kills it), checking in with the arbiter meanwhile.

Note: gunicorn itself swaps any worker class whose name ends in
``SyncWorker`` for its plain gthread worker when ``--threads`` is above 1
(gunicorn's ``Config.worker_class``), so with threads use ``ThreadWorker``.

``UvicornWorker`` and ``UvicornH11Worker`` (gunicorn's uvicorn worker, from
the ``uvicorn-worker`` package, with :mod:`pysock.integrations.uvicorn`'s
protocols) are imported on first use, so the sync and gthread workers need
neither uvicorn nor uvicorn-worker::

    gunicorn -k pysock.integrations.gunicorn.UvicornWorker app:app
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

from pysock._reaper import default_reaper
from pysock.integrations._common import require
from pysock.integrations._threaded import Closer, policy_deadline

if TYPE_CHECKING:
    from pysock.integrations._gunicorn_uvicorn import UvicornH11Worker, UvicornWorker

__all__ = ["SyncWorker", "ThreadWorker", "UvicornH11Worker", "UvicornWorker"]

require("gunicorn.util", "gunicorn", attributes=("close_graceful", "close"))
require("gunicorn.workers.sync", "gunicorn", attributes=("SyncWorker.handle",))
require(
    "gunicorn.workers.gthread",
    "gunicorn",
    attributes=("ThreadWorker.finish_request", "TConn.close"),
)
import gunicorn  # noqa: E402  (after the checks)
from gunicorn import util as _util  # noqa: E402
from gunicorn.workers import gthread as _gthread  # noqa: E402
from gunicorn.workers import sync as _sync  # noqa: E402


def _calls(function: Any, name: str) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and name in code.co_names


# The internals named above, checked at import: a gunicorn that no longer
# closes through util.close_graceful would otherwise get its plain close back
# without a word.
for _where, _function, _name in (
    ("gunicorn.workers.sync.SyncWorker.handle", _sync.SyncWorker.handle, "close_graceful"),
    ("gunicorn.workers.gthread.TConn.close", _gthread.TConn.close, "close_graceful"),
    (
        "gunicorn.workers.gthread.ThreadWorker.finish_request",
        _gthread.ThreadWorker.finish_request,
        "close",
    ),
):
    if not _calls(_function, _name):
        raise ImportError(
            f"pysock.integrations.gunicorn: gunicorn {gunicorn.__version__}'s {_where} "
            f"no longer calls {_name}, which this integration replaces; install a tested "
            "version: pip install 'pysock-linger[gunicorn]'"
        )

_closer = Closer("gunicorn")


def _lingering_close(sock: socket.socket, timeout: float = 2.0, max_drain: int = 65536) -> None:
    """``gunicorn.util.close_graceful``'s signature; its limits are replaced
    by the policy's."""
    _closer.submit(sock)


def _install() -> None:
    """In the worker process: every close_graceful becomes a lingering close."""
    _util.close_graceful = _lingering_close


class _Lingering:
    """What both workers add to gunicorn's: the replacement installed in the
    worker process, and the wait for closes in flight at the end."""

    _pysock_stop_at: float | None = None

    if TYPE_CHECKING:  # what this mixin uses of gunicorn's Worker
        cfg: Any
        log: Any

        def notify(self) -> None: ...

    def init_process(self) -> None:
        _install()
        super().init_process()  # type: ignore[misc]  # runs the worker until it stops

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._pysock_stop_at is None:
            self._pysock_stop_at = time.monotonic()
        super().handle_exit(sig, frame)  # type: ignore[misc]

    def run(self) -> None:
        try:
            super().run()  # type: ignore[misc]
        finally:
            self._wait_for_closes()

    def _wait_for_closes(self) -> None:
        deadline = time.monotonic() + policy_deadline() + 0.5
        if self._pysock_stop_at is not None:
            # Leave the arbiter's SIGKILL (graceful_timeout after its SIGTERM)
            # half a second.
            grace = self._pysock_stop_at + float(self.cfg.graceful_timeout) - 0.5
            deadline = min(deadline, grace)
        while _closer.in_flight:
            left = deadline - time.monotonic()
            if left <= 0:
                self.log.warning(
                    "pysock: %d lingering close(s) still in flight at worker exit: aborted",
                    _closer.in_flight,
                )
                # Now, rather than in the reaper's exit handler a second later.
                default_reaper().close(timeout=0)
                break
            self.notify()
            _closer.wait(min(left, 1.0))


class SyncWorker(_Lingering, _sync.SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker with a lingering close."""


class ThreadWorker(_Lingering, _gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker with a lingering close that never blocks
    its main (poller) thread."""


def __getattr__(name: str) -> Any:
    # The uvicorn workers need uvicorn and uvicorn-worker: imported on first use.
    if name in ("UvicornWorker", "UvicornH11Worker"):
        from pysock.integrations import _gunicorn_uvicorn

        return getattr(_gunicorn_uvicorn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
