"""pysock.integrations.socketserver end to end: ``http.server``'s
ThreadingHTTPServer (and the serial HTTPServer) with LingeringCloseMixin,
against the plain servers as the control."""

from __future__ import annotations

import pytest

from . import scenarios
from .apps import PAGE_BODY

KINDS = {"threading": (), "serial": ("--serial",)}


def socketserver(kind: str = "threading") -> scenarios.Launcher:
    return scenarios.launch_py("socketserver", *KINDS[kind])


@pytest.mark.parametrize("kind", list(KINDS))
def test_early_413_whole_with_the_mixin_and_cut_without(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios.check_cells(f"socketserver {kind}", socketserver(kind), capsys)


@pytest.mark.parametrize("kind", list(KINDS))
def test_keep_alive_and_streaming_unchanged(kind: str) -> None:
    scenarios.check_keepalive(socketserver(kind))


def test_client_disconnecting_mid_upload() -> None:
    scenarios.check_disconnect_mid_upload(socketserver(), reset_traceback=True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_client_that_never_reads_is_cut_at_the_deadline(kind: str) -> None:
    scenarios.check_never_reading_client(socketserver(kind), page=PAGE_BODY)


@pytest.mark.parametrize("kind", list(KINDS))
def test_sigterm_with_a_lingering_close_in_flight(kind: str) -> None:
    scenarios.check_shutdown_waits_for_deadline(socketserver(kind))
