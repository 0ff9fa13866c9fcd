"""pysock.integrations.cheroot end to end: ``cheroot.wsgi.Server`` against
pysock's ``Server`` (its ConnectionClass)."""

from __future__ import annotations

import pytest

pytest.importorskip("cheroot")
pytest.importorskip("httpx")
pytest.importorskip("requests")

from integrations.harness import keepalive_gets
from integrations.threaded_support import (
    SHORT_POLICY,
    check_cells,
    check_mid_upload_disconnect,
    check_never_reads,
    check_sigterm_in_flight,
    launched,
    matrix,
)

pytestmark = pytest.mark.integration


def test_early_413_whole_with_the_server_and_cut_without(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with launched("cheroot", False) as plain:
        plain_cells = matrix(plain.url)
    with launched("cheroot", True) as ours:
        our_cells = matrix(ours.url)
    check_cells("cheroot", plain_cells, our_cells, capsys)


def test_keep_alive_and_streaming_unchanged() -> None:
    with launched("cheroot", True) as server:
        assert keepalive_gets(server.port, 5) == [(200, b"ok\n")] * 5
        for _ in range(2):
            assert keepalive_gets(server.port, 1, "/stream") == [(200, b"s" * 16 * 1024 * 8)]


def test_client_disconnecting_mid_upload() -> None:
    with launched("cheroot", True) as server:
        check_mid_upload_disconnect(server)


def test_client_that_never_reads_is_cut_at_the_deadline() -> None:
    with launched("cheroot", True, SHORT_POLICY) as server:
        check_never_reads(server, "cheroot")


def test_sigterm_with_a_lingering_close_in_flight() -> None:
    env = {"PYSOCK_DRAIN_TIMEOUT": "3", "PYSOCK_DRAIN_IDLE": "3"}
    check_sigterm_in_flight(launched("cheroot", True, env), "cheroot")
