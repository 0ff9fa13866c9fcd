"""pysock.integrations.cheroot end to end: ``cheroot.wsgi.Server`` against
pysock's ``Server`` (its ConnectionClass)."""

from __future__ import annotations

import pytest

from . import scenarios
from .apps import PAGE_BODY

scenarios.need("cheroot")

CHEROOT = scenarios.launch_py("cheroot")


def test_early_413_whole_with_the_server_and_cut_without(
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenarios.check_cells("cheroot", CHEROOT, capsys)


def test_keep_alive_and_streaming_unchanged() -> None:
    scenarios.check_keepalive(CHEROOT)


def test_client_disconnecting_mid_upload() -> None:
    scenarios.check_disconnect_mid_upload(CHEROOT)


def test_client_that_never_reads_is_cut_at_the_deadline() -> None:
    scenarios.check_never_reading_client(CHEROOT, page=PAGE_BODY)


def test_sigterm_with_a_lingering_close_in_flight() -> None:
    scenarios.check_shutdown_waits_for_deadline(CHEROOT)
