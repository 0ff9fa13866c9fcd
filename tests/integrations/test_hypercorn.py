"""hypercorn, started from Python as its users start it
(``asyncio.run(serve(app, config))``, by launch.py): ``hypercorn.asyncio.serve``
(its own close) against ``pysock.integrations.hypercorn.serve``, on the
asyncio loop and on uvloop."""

from __future__ import annotations

import pytest

from . import scenarios

scenarios.need("hypercorn")

LOOPS = ["asyncio", "uvloop"]


def hypercorn(loop: str = "asyncio") -> scenarios.Launcher:
    return scenarios.launch_py("hypercorn", "--loop", loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_early_413_every_client(loop: str, capsys: pytest.CaptureFixture[str]) -> None:
    scenarios.check_cells(f"hypercorn --loop {loop}", hypercorn(loop), capsys)


def test_keepalive_streaming_pipelining_unchanged() -> None:
    scenarios.check_keepalive(hypercorn())


def test_websocket_unchanged() -> None:
    scenarios.check_websocket(hypercorn())


def test_client_disconnects_mid_upload() -> None:
    scenarios.check_disconnect_mid_upload(hypercorn(), env=scenarios.SHORT, send_error_ok=False)


def test_never_reading_client_deadline() -> None:
    scenarios.check_never_reading_client(hypercorn(), rcvbuf=4096, interval=0.02, length=1 << 40)


@pytest.mark.parametrize("loop", LOOPS)
def test_graceful_shutdown_waits_for_lingering_closes(loop: str) -> None:
    scenarios.check_shutdown_waits_for_eof(hypercorn(loop))
