"""pysock.integrations.socketserver end to end: ``http.server``'s
ThreadingHTTPServer (and the serial HTTPServer) with LingeringCloseMixin,
against the plain servers as the control."""

from __future__ import annotations

import pytest

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

KINDS = {"threading": (), "serial": ("--serial",)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_early_413_whole_with_the_mixin_and_cut_without(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with launched("socketserver", False, None, *KINDS[kind]) as plain:
        plain_cells = matrix(plain.url)
    with launched("socketserver", True, None, *KINDS[kind]) as ours:
        our_cells = matrix(ours.url)
    check_cells(f"socketserver {kind}", plain_cells, our_cells, capsys)


@pytest.mark.parametrize("kind", list(KINDS))
def test_keep_alive_and_streaming_unchanged(kind: str) -> None:
    with launched("socketserver", True, None, *KINDS[kind]) as server:
        assert keepalive_gets(server.port, 5) == [(200, b"ok\n")] * 5
        for _ in range(2):
            assert keepalive_gets(server.port, 1, "/stream") == [(200, b"s" * 16 * 1024 * 8)]


def test_client_disconnecting_mid_upload() -> None:
    with launched("socketserver", True) as server:
        check_mid_upload_disconnect(server)


@pytest.mark.parametrize("kind", list(KINDS))
def test_client_that_never_reads_is_cut_at_the_deadline(kind: str) -> None:
    with launched("socketserver", True, SHORT_POLICY, *KINDS[kind]) as server:
        check_never_reads(server, "socketserver")


@pytest.mark.parametrize("kind", list(KINDS))
def test_sigterm_with_a_lingering_close_in_flight(kind: str) -> None:
    env = {"PYSOCK_DRAIN_TIMEOUT": "3", "PYSOCK_DRAIN_IDLE": "3"}
    check_sigterm_in_flight(launched("socketserver", True, env, *KINDS[kind]), "socketserver")
