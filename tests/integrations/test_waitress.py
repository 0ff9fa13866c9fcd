"""pysock.integrations.waitress end to end: ``waitress.serve`` against
pysock's ``serve`` (its channel_class).

waitress reads a whole request body before the application runs, so the
app's early 413 leaves nothing unread and its own close loses nothing
there (the first cell's control, reported, not asserted).  What it does
leave unread: the rest of a body over ``max_request_body_size`` (its own
small 413) and a pipelined request behind one that ends the connection —
the second shows the loss every time."""

from __future__ import annotations

import pytest

from . import scenarios
from .apps import PAGE

scenarios.need("waitress")

WAITRESS = scenarios.launch_py("waitress")
#: Over this body size waitress answers with its own 413 and closes.
OWN_413 = scenarios.launch_py("waitress", "--max-body", str(1024 * 1024))
#: Sent at once by the misbehaving clients: over the limit.
BURST = 2 * 1024 * 1024


def test_early_413_of_the_app_whole_either_way(capsys: pytest.CaptureFixture[str]) -> None:
    scenarios.check_cells("waitress (app's 413)", WAITRESS, capsys, plain_must_lose=False)


def test_own_413_over_the_body_limit_whole_with_pysock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cells = scenarios.check_cells("waitress (own 413)", OWN_413, capsys, plain_must_lose=False)
    assert "pysock-log: waitress: graceful/eof" in cells.output


def test_pipelined_request_behind_a_close_cut_without_pysock_whole_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = {}
    for pysock in (False, True):
        with WAITRESS(pysock) as server:
            results[pysock] = [scenarios.pipelined_after_close(server.port) for _ in range(10)]
    with capsys.disabled():
        for pysock, rows in results.items():
            whole = sum(status == 413 and n == PAGE for status, n, _ in rows)
            print(f"\nwaitress pipelined, {'pysock' if pysock else 'plain '}: {whole}/10 whole")
    assert all(status == 413 and n == PAGE and err is None for status, n, err in results[True])
    assert any(n < PAGE for _, n, _ in results[False]), results[False]


def test_keep_alive_and_streaming_unchanged() -> None:
    scenarios.check_keepalive(WAITRESS, after_stream=False)


def test_client_disconnecting_mid_upload() -> None:
    scenarios.check_disconnect_mid_upload(WAITRESS)


def test_client_that_never_reads_is_cut_at_the_deadline() -> None:
    scenarios.check_never_reading_client(OWN_413, burst=BURST)


def test_sigterm_with_a_lingering_close_in_flight() -> None:
    scenarios.check_shutdown_waits_for_deadline(OWN_413, burst=BURST)
