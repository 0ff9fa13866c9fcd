"""gunicorn's uvicorn worker (the ``uvicorn-worker`` package) with a
lingering close: ``UvicornWorker`` and ``UvicornH11Worker``.

Meant to be re-exported by ``pysock.integrations.gunicorn``::

    gunicorn -k pysock.integrations.gunicorn.UvicornWorker app:app

They are ``uvicorn_worker.UvicornWorker`` / ``UvicornH11Worker`` with uvicorn's
protocol swapped for :mod:`pysock.integrations.uvicorn`'s: ``HttpToolsProtocol``
where uvicorn's ``--http auto`` would pick httptools (it is installed), else
``H11Protocol``; ``UvicornH11Worker`` always ``H11Protocol``.  Everything
else (the loop, gunicorn's settings, signals, graceful shutdown) is the
worker's own; see :mod:`pysock.integrations.uvicorn` for what lingers.

Relies on ``UvicornWorker.CONFIG_KWARGS`` (the keywords the worker adds to
its ``uvicorn.Config``; checked against uvicorn-worker 0.4.0).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pysock.integrations._common import require

require("uvicorn_worker", "gunicorn", attributes=("UvicornWorker.CONFIG_KWARGS",))

from uvicorn_worker import UvicornH11Worker as _H11Base  # noqa: E402
from uvicorn_worker import UvicornWorker as _Base  # noqa: E402

from pysock.integrations import uvicorn as _uvicorn  # noqa: E402

__all__ = ["UvicornH11Worker", "UvicornWorker"]


def _auto() -> type[Any]:
    """What uvicorn's ``http="auto"`` picks, as the pysock protocol."""
    if importlib.util.find_spec("httptools") is not None:
        return _uvicorn.HttpToolsProtocol
    return _uvicorn.H11Protocol


class UvicornWorker(_Base):  # type: ignore[misc]
    """``uvicorn_worker.UvicornWorker`` with a lingering close."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 (the base's class attribute)
        **_Base.CONFIG_KWARGS,
        "http": _auto(),
    }


class UvicornH11Worker(_H11Base):  # type: ignore[misc]
    """``uvicorn_worker.UvicornH11Worker`` with a lingering close."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012
        **_H11Base.CONFIG_KWARGS,
        "http": _uvicorn.H11Protocol,
    }
