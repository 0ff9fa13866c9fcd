"""tornado, started from Python as its users start it
(``HTTPServer(app).listen(port)``, by launch.py): ``tornado.httpserver.HTTPServer``
(its own close) against ``pysock.integrations.tornado.HTTPServer``, on the
asyncio loop and on uvloop.  The early 413 is answered by a
``@stream_request_body`` handler's ``prepare``, before any body is read."""

from __future__ import annotations

import pytest

from . import scenarios

scenarios.need("tornado")

LOOPS = ["asyncio", "uvloop"]


def tornado(loop: str = "asyncio") -> scenarios.Launcher:
    return scenarios.launch_py("tornado", "--loop", loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_early_413_every_client(loop: str, capsys: pytest.CaptureFixture[str]) -> None:
    scenarios.check_cells(f"tornado --loop {loop}", tornado(loop), capsys)


def test_keepalive_streaming_pipelining_unchanged() -> None:
    scenarios.check_keepalive(tornado())


def test_client_disconnects_mid_upload() -> None:
    scenarios.check_disconnect_mid_upload(tornado(), env=scenarios.SHORT, send_error_ok=False)


def test_never_reading_client_deadline() -> None:
    scenarios.check_never_reading_client(tornado(), rcvbuf=4096, interval=0.02, length=1 << 40)


@pytest.mark.parametrize("loop", LOOPS)
def test_graceful_shutdown_waits_for_lingering_closes(loop: str) -> None:
    scenarios.check_shutdown_waits_for_eof(tornado(loop))
