"""pysock.integrations.gunicorn end to end: gunicorn started by its own
command line with ``-k pysock.integrations.gunicorn.SyncWorker`` /
``ThreadWorker``, against ``-k sync`` / ``-k gthread`` as the control."""

from __future__ import annotations

import pytest

from . import scenarios
from .apps import PAGE_BODY
from .scenarios import gunicorn

scenarios.need("gunicorn")

KINDS = ["sync", "gthread"]


@pytest.mark.parametrize("kind", KINDS)
def test_early_413_whole_with_the_worker_and_cut_without(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios.check_cells(f"gunicorn {kind}", gunicorn(kind), capsys)


def test_thread_worker_keeps_connections_alive() -> None:
    # The sync worker closes every connection after one request.  gunicorn
    # 26's gthread worker drops the second of two pipelined requests with
    # its own close too (seen at 26.0.0, the oldest supported); 27 answers both.
    import gunicorn as server

    release = tuple(int(part) for part in server.__version__.split(".")[:2])
    scenarios.check_keepalive(gunicorn("gthread"), pipelined=release >= (27, 0))


@pytest.mark.parametrize("kind", KINDS)
def test_client_disconnecting_mid_upload_leaves_the_worker_serving(kind: str) -> None:
    scenarios.check_disconnect_mid_upload(gunicorn(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_client_that_never_reads_is_cut_at_the_deadline(kind: str) -> None:
    scenarios.check_never_reading_client(gunicorn(kind), page=PAGE_BODY)


@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_with_a_lingering_close_in_flight_exits_within_the_deadline(kind: str) -> None:
    scenarios.check_shutdown_waits_for_deadline(gunicorn(kind))
