"""uvicorn, started by its own command line, with ``--http h11`` /
``--http httptools`` (its own close) against ``--http
pysock.integrations.uvicorn:H11Protocol`` / ``:HttpToolsProtocol``, on the
asyncio loop and on uvloop.

uvicorn reads and discards a refused body itself while the response keeps
the connection alive, so the early 413 here carries ``Connection: close``
(``POST /close``), as nginx's own 413 does: then uvicorn closes at once.
"""

from __future__ import annotations

import pytest

from . import scenarios
from .scenarios import uvicorn

scenarios.need("uvicorn")

HTTP = sorted(scenarios.UVICORN_HTTP)
LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("http", HTTP)
def test_early_413_every_client(http: str, loop: str, capsys: pytest.CaptureFixture[str]) -> None:
    if http == "httptools":
        scenarios.need("httptools")
    label = f"uvicorn --http {http} --loop {loop}"
    scenarios.check_cells(label, uvicorn(http, loop), capsys, "/close")


@pytest.mark.parametrize("http", HTTP)
def test_keepalive_413_still_drained_by_uvicorn(http: str) -> None:
    """The 413 without Connection: close: uvicorn discards the body itself
    and keeps the connection; with the integration nothing changes."""
    launch = uvicorn(http)
    for pysock in (False, True):
        with launch(pysock) as server:
            whole, total, errs = scenarios.run_cell("httpx", server.url + "/", 3)
            assert (whole, total) == (3, 3), errs
            out = server.output()
        assert scenarios.closes(out) == []  # nothing lingered: uvicorn kept the connection


@pytest.mark.parametrize("http", HTTP)
def test_keepalive_streaming_pipelining_unchanged(http: str) -> None:
    scenarios.check_keepalive(uvicorn(http))


@pytest.mark.parametrize("http", HTTP)
def test_websocket_unchanged(http: str) -> None:
    scenarios.check_websocket(uvicorn(http), "/close")


@pytest.mark.parametrize("http", HTTP)
def test_client_disconnects_mid_upload(http: str) -> None:
    scenarios.check_disconnect_mid_upload(
        uvicorn(http), "/close", env=scenarios.SHORT, send_error_ok=False
    )


@pytest.mark.parametrize("http", HTTP)
def test_never_reading_client_deadline(http: str) -> None:
    scenarios.check_never_reading_client(
        uvicorn(http), "/close", rcvbuf=4096, interval=0.02, length=1 << 40
    )


@pytest.mark.parametrize("loop", LOOPS)
def test_graceful_shutdown_waits_for_lingering_closes(loop: str) -> None:
    scenarios.check_shutdown_waits_for_eof(uvicorn("h11", loop), "/close")
