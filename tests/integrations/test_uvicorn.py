"""uvicorn, started by its own command line, with ``--http h11`` /
``--http httptools`` (its own close) against ``--http
pysock.integrations.uvicorn:H11Protocol`` / ``:HttpToolsProtocol``, on the
asyncio loop and on uvloop.

uvicorn reads and discards a refused body itself while the response keeps
the connection alive, so the early 413 here carries ``Connection: close``
(``POST /close``), as nginx's own 413 does: then uvicorn closes at once.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pytest

from integrations import scenarios
from integrations.harness import HERE, ServerProcess, free_port, start_server

scenarios.need("uvicorn")

IMPLS = {"h11": "H11Protocol", "httptools": "HttpToolsProtocol"}
LOOPS = ["asyncio", "uvloop"]
LOG_CONFIG = f"{HERE}/uvicorn_log.json"


def launcher(http: str, loop: str) -> scenarios.Launcher:
    def launch(port: int, pysock: bool, env: Mapping[str, str] | None) -> ServerProcess:
        impl = f"pysock.integrations.uvicorn:{IMPLS[http]}" if pysock else http
        argv = [
            sys.executable, "-m", "uvicorn", "apps:asgi_app", "--app-dir", HERE,
            "--host", "127.0.0.1", "--port", str(port), "--http", impl, "--loop", loop,
            "--log-config", LOG_CONFIG, "--no-access-log",
        ]  # fmt: skip
        return start_server(argv, port, env)

    return launch


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("http", sorted(IMPLS))
def test_early_413_every_client(http: str, loop: str) -> None:
    if http == "httptools":
        scenarios.need("httptools")
    print(f"\nuvicorn --http {http} --loop {loop}, POST /close (413 + Connection: close)")
    scenarios.check_cells(scenarios.cells(launcher(http, loop), "/close"))


@pytest.mark.parametrize("http", sorted(IMPLS))
def test_keepalive_413_still_drained_by_uvicorn(http: str) -> None:
    """The 413 without Connection: close: uvicorn discards the body itself
    and keeps the connection; with the integration nothing changes."""
    launch = launcher(http, "asyncio")
    for pysock in (False, True):
        port = free_port()
        with launch(port, pysock, None) as server:
            whole, total, errs = scenarios.run_cell("httpx", server.url + "/", 3)
            assert (whole, total) == (3, 3), errs
            out = server.output()
        assert scenarios.closes(out) == []  # nothing lingered: uvicorn kept the connection


@pytest.mark.parametrize("http", sorted(IMPLS))
def test_keepalive_streaming_pipelining_unchanged(http: str) -> None:
    scenarios.check_keepalive(launcher(http, "asyncio"))


@pytest.mark.parametrize("http", sorted(IMPLS))
def test_websocket_unchanged(http: str) -> None:
    scenarios.need("websockets")
    from websockets.sync.client import connect

    port = free_port()
    with launcher(http, "asyncio")(port, True, None) as server:
        with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
        # and the HTTP side is still served
        assert scenarios.run_cell("httpx", server.url + "/close", 1)[:2] == (1, 1)


@pytest.mark.parametrize("http", sorted(IMPLS))
def test_client_disconnects_mid_upload(http: str) -> None:
    scenarios.check_disconnect_mid_upload(launcher(http, "asyncio"), "/close")


@pytest.mark.parametrize("http", sorted(IMPLS))
def test_never_reading_client_deadline(http: str) -> None:
    scenarios.check_never_reading_client(launcher(http, "asyncio"), "/close")


@pytest.mark.parametrize("loop", LOOPS)
def test_graceful_shutdown_waits_for_lingering_closes(loop: str) -> None:
    scenarios.check_graceful_shutdown(launcher("h11", loop), "/close")
