"""gunicorn with uvicorn's worker, by gunicorn's command line:
``-k uvicorn_worker.UvicornWorker`` (its own close) against
``-k pysock.integrations.gunicorn.UvicornWorker`` (from
pysock.integrations.gunicorn)."""

from __future__ import annotations

import pytest

from . import scenarios

scenarios.need("gunicorn")
scenarios.need("uvicorn_worker")


def gunicorn(kind: str = "uvicorn") -> scenarios.Launcher:
    return scenarios.gunicorn(kind, "--graceful-timeout", "10")


def test_early_413_every_client(capsys: pytest.CaptureFixture[str]) -> None:
    scenarios.check_cells("gunicorn -k UvicornWorker", gunicorn(), capsys, "/close")


def test_h11_worker_early_413(capsys: pytest.CaptureFixture[str]) -> None:
    label = "gunicorn -k UvicornH11Worker"
    scenarios.check_cells(label, gunicorn("uvicorn-h11"), capsys, "/close", n=5)


def test_keepalive_streaming_pipelining_unchanged() -> None:
    scenarios.check_keepalive(gunicorn())
