"""tornado, started from Python as its users start it
(``HTTPServer(app).listen(port)``, by launch.py): ``tornado.httpserver.HTTPServer``
(its own close) against ``pysock.integrations.tornado.HTTPServer``, on the
asyncio loop and on uvloop.  The early 413 is answered by a
``@stream_request_body`` handler's ``prepare``, before any body is read."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pytest

from integrations import scenarios
from integrations.harness import LAUNCH, ServerProcess, start_server

scenarios.need("tornado")


def launcher(loop: str = "asyncio") -> scenarios.Launcher:
    def launch(port: int, pysock: bool, env: Mapping[str, str] | None) -> ServerProcess:
        argv = [sys.executable, LAUNCH, "tornado", "--port", str(port), "--loop", loop, "--debug"]
        if pysock:
            argv.append("--pysock")
        return start_server(argv, port, env)

    return launch


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_early_413_every_client(loop: str) -> None:
    print(f"\ntornado --loop {loop}, POST / (413 from prepare)")
    scenarios.check_cells(scenarios.cells(launcher(loop), "/"))


def test_keepalive_streaming_pipelining_unchanged() -> None:
    scenarios.check_keepalive(launcher())


def test_client_disconnects_mid_upload() -> None:
    scenarios.check_disconnect_mid_upload(launcher(), "/")


def test_never_reading_client_deadline() -> None:
    scenarios.check_never_reading_client(launcher(), "/")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_graceful_shutdown_waits_for_lingering_closes(loop: str) -> None:
    scenarios.check_graceful_shutdown(launcher(loop), "/")
