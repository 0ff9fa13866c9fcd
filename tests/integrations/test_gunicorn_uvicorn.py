"""gunicorn with uvicorn's worker, by gunicorn's command line:
``-k uvicorn_worker.UvicornWorker`` (its own close) against
``-k pysock.integrations.gunicorn.UvicornWorker`` (from
pysock.integrations.gunicorn)."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from integrations import scenarios
from integrations.harness import HERE, ServerProcess, start_server

scenarios.need("gunicorn")
scenarios.need("uvicorn_worker")


def launcher(worker: str = "UvicornWorker") -> scenarios.Launcher:
    def launch(port: int, pysock: bool, env: Mapping[str, str] | None) -> ServerProcess:
        module = "pysock.integrations.gunicorn" if pysock else "uvicorn_worker"
        argv = [
            sys.executable, "-m", "gunicorn", "apps:asgi_app", "--chdir", HERE,
            "-b", f"127.0.0.1:{port}", "-w", "1", "-k", f"{module}.{worker}",
            "--graceful-timeout", "10",
        ]  # fmt: skip
        return start_server(argv, port, env)

    return launch


def test_early_413_every_client() -> None:
    print("\ngunicorn -k UvicornWorker, POST /close (413 + Connection: close)")
    scenarios.check_cells(scenarios.cells(launcher(), "/close"))


def test_h11_worker_early_413() -> None:
    print("\ngunicorn -k UvicornH11Worker, POST /close (413 + Connection: close)")
    scenarios.check_cells(scenarios.cells(launcher("UvicornH11Worker"), "/close", n=5))


def test_keepalive_streaming_pipelining_unchanged() -> None:
    scenarios.check_keepalive(launcher())
