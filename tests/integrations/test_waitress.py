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

pytest.importorskip("waitress")
pytest.importorskip("httpx")
pytest.importorskip("requests")

from integrations.apps import PAGE
from integrations.harness import keepalive_gets
from integrations.threaded_support import (
    SHORT_POLICY,
    check_cells,
    check_mid_upload_disconnect,
    check_never_reads,
    check_sigterm_in_flight,
    launched,
    matrix,
    pipelined_after_close,
)

pytestmark = pytest.mark.integration

MAX_BODY = ("--max-body", str(1024 * 1024))


def test_early_413_of_the_app_whole_either_way(capsys: pytest.CaptureFixture[str]) -> None:
    with launched("waitress", False) as plain:
        plain_cells = matrix(plain.url)
    with launched("waitress", True) as ours:
        our_cells = matrix(ours.url)
    check_cells("waitress (app's 413)", plain_cells, our_cells, capsys, plain_must_lose=False)


def test_own_413_over_the_body_limit_whole_with_pysock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with launched("waitress", False, None, *MAX_BODY) as plain:
        plain_cells = matrix(plain.url)
    with launched("waitress", True, None, *MAX_BODY) as ours:
        our_cells = matrix(ours.url)
        assert "pysock-log: waitress: graceful/eof" in ours.output()
    check_cells("waitress (own 413)", plain_cells, our_cells, capsys, plain_must_lose=False)


def test_pipelined_request_behind_a_close_cut_without_pysock_whole_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = {}
    for pysock in (False, True):
        with launched("waitress", pysock) as server:
            results[pysock] = [pipelined_after_close(server.port) for _ in range(10)]
    with capsys.disabled():
        for pysock, rows in results.items():
            whole = sum(status == 413 and n == PAGE for status, n, _ in rows)
            print(f"\nwaitress pipelined, {'pysock' if pysock else 'plain '}: {whole}/10 whole")
    assert all(status == 413 and n == PAGE and err is None for status, n, err in results[True])
    assert any(n < PAGE for _, n, _ in results[False]), results[False]


def test_keep_alive_and_streaming_unchanged() -> None:
    with launched("waitress", True) as server:
        assert keepalive_gets(server.port, 5) == [(200, b"ok\n")] * 5
        for _ in range(2):
            assert keepalive_gets(server.port, 1, "/stream") == [(200, b"s" * 16 * 1024 * 8)]


def test_client_disconnecting_mid_upload() -> None:
    with launched("waitress", True) as server:
        check_mid_upload_disconnect(server)


def test_client_that_never_reads_is_cut_at_the_deadline() -> None:
    # Over the body limit: waitress answers with its own 413 and closes.
    with launched("waitress", True, SHORT_POLICY, *MAX_BODY) as server:
        check_never_reads(server, "waitress", burst=2 * 1024 * 1024)


def test_sigterm_with_a_lingering_close_in_flight() -> None:
    env = {"PYSOCK_DRAIN_TIMEOUT": "3", "PYSOCK_DRAIN_IDLE": "3"}
    server = launched("waitress", True, env, *MAX_BODY)
    check_sigterm_in_flight(server, "waitress", burst=2 * 1024 * 1024)
