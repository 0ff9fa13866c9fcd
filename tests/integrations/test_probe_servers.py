"""``pysock probe`` against real servers: their own close shows the trap (and
the probe names the integration that fixes it); with the integration the
probe sees the response whole, then FIN."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from . import scenarios
from .harness import HERE

TRIES = 5  # a reader as quick as the probe wins the race against the RST now and then

# (name, launcher, path, the integration the probe should name)
SERVERS: list[tuple[str, scenarios.Launcher, str, str]] = [
    ("uvicorn", scenarios.uvicorn("h11"), "/close", "pysock.integrations.uvicorn"),
    ("gunicorn", scenarios.gunicorn("sync"), "/", "pysock.integrations.gunicorn"),
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
def test_probe_shows_the_trap_then_the_cure(
    name: str, launch: scenarios.Launcher, path: str, fix: str
) -> None:
    scenarios.need(name)
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
