"""gunicorn's configuration for the integration tests (``gunicorn -c``):
each lingering close logged to stderr as ``pysock-log: <server>:
<how>/<reason>, drained ...`` (launch.py's ``--debug`` format) and the
integration's counters printed at worker exit (``pysock-stats: ...``)."""

from __future__ import annotations

import logging
import sys
from typing import Any


def post_worker_init(worker: Any) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pysock-log: %(message)s"))
    log = logging.getLogger("pysock.integrations")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def worker_exit(server: Any, worker: Any) -> None:
    if "pysock.integrations" in sys.modules:
        from pysock.integrations import stats

        print(f"pysock-stats: {stats()}", file=sys.stderr, flush=True)
