"""``pysock probe`` against real servers: their own close shows the trap (and
the probe names the integration that fixes it); with the integration the
probe sees the response whole, then FIN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from . import scenarios
from .harness import HERE, ServerProcess, free_port, start_server

ROOT = os.path.dirname(os.path.dirname(HERE))

TRIES = 5  # a reader as quick as the probe wins the race against the RST now and then


def uvicorn(pysock: bool) -> ServerProcess:
    scenarios.need("uvicorn")
    port = free_port()
    http = "pysock.integrations.uvicorn:H11Protocol" if pysock else "h11"
    argv = [
        sys.executable, "-m", "uvicorn", "apps:asgi_app", "--app-dir", HERE,
        "--host", "127.0.0.1", "--port", str(port), "--http", http,
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return start_server(argv, port)


def gunicorn(pysock: bool) -> ServerProcess:
    scenarios.need("gunicorn")
    port = free_port()
    worker = "pysock.integrations.gunicorn.SyncWorker" if pysock else "sync"
    argv = [
        sys.executable, "-m", "gunicorn", "-k", worker, "-w", "1",
        "-b", f"127.0.0.1:{port}", "--chdir", HERE, "apps:wsgi_app",
    ]  # fmt: skip
    return start_server(argv, port, cwd=ROOT)


# (name, launcher, path, the integration the probe should name)
SERVERS: list[tuple[str, Callable[[bool], ServerProcess], str, str]] = [
    ("uvicorn", uvicorn, "/close", "pysock.integrations.uvicorn"),
    ("gunicorn", gunicorn, "/", "pysock.integrations.gunicorn"),
]


def probe(url: str) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pysock", "probe", url, "--body", "8MiB", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,  # not the source root, whose pysock/ would shadow the installed one
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.mark.parametrize(("name", "launch", "path", "fix"), SERVERS, ids=[s[0] for s in SERVERS])
def test_probe_shows_the_trap_then_the_cure(name, launch, path, fix):
    with launch(False) as server:
        outcomes = []
        for _ in range(TRIES):
            code, res, _ = probe(server.url + path)
            outcomes.append((code, res["outcome"], res["end"], res["after"]))
            assert res["status"] == 413
            if code == 1:
                assert res["trap"] is True, res
                assert res["outcome"] in ("reset", "truncated"), res
                break
        assert any(o[0] == 1 for o in outcomes), outcomes  # the control: the trap shows
        text = subprocess.run(
            [sys.executable, "-m", "pysock", "probe", server.url + path],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=HERE,
        ).stdout
        assert f"fix ({name}): {fix}" in text, text
    with launch(True) as server:
        for _ in range(3):
            code, res, _ = probe(server.url + path)
            assert code == 0, res
            assert (res["outcome"], res["after"], res["trap"]) == ("whole", "fin", False), res
