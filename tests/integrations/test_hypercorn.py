"""hypercorn, started from Python as its users start it
(``asyncio.run(serve(app, config))``, by launch.py): ``hypercorn.asyncio.serve``
(its own close) against ``pysock.integrations.hypercorn.serve``, on the
asyncio loop and on uvloop."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pytest

from integrations import scenarios
from integrations.harness import LAUNCH, ServerProcess, free_port, start_server

scenarios.need("hypercorn")


def launcher(loop: str = "asyncio") -> scenarios.Launcher:
    def launch(port: int, pysock: bool, env: Mapping[str, str] | None) -> ServerProcess:
        argv = [sys.executable, LAUNCH, "hypercorn", "--port", str(port), "--loop", loop, "--debug"]
        if pysock:
            argv.append("--pysock")
        return start_server(argv, port, env)

    return launch


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_early_413_every_client(loop: str) -> None:
    print(f"\nhypercorn --loop {loop}, POST / (413 early)")
    scenarios.check_cells(scenarios.cells(launcher(loop), "/"))


def test_keepalive_streaming_pipelining_unchanged() -> None:
    scenarios.check_keepalive(launcher())


def test_websocket_unchanged() -> None:
    scenarios.need("websockets")
    from websockets.sync.client import connect

    port = free_port()
    with launcher()(port, True, None) as server:
        with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
        assert scenarios.run_cell("httpx", server.url + "/", 1)[:2] == (1, 1)


def test_client_disconnects_mid_upload() -> None:
    scenarios.check_disconnect_mid_upload(launcher(), "/")


def test_never_reading_client_deadline() -> None:
    scenarios.check_never_reading_client(launcher(), "/")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_graceful_shutdown_waits_for_lingering_closes(loop: str) -> None:
    scenarios.check_graceful_shutdown(launcher(loop), "/")
