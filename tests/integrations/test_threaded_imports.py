"""Importing a threaded server's integration: a missing server, or missing
internals, is an ImportError naming the extra; ``import pysock`` imports no
server.  Each import runs in a fresh interpreter."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from integrations.threaded_support import ROOT, import_fails_without


@pytest.mark.parametrize("server", ["gunicorn", "cheroot", "waitress"])
def test_import_without_the_server_names_the_extra(server: str) -> None:
    text = import_fails_without(f"pysock.integrations.{server}", [server])
    assert f"pip install 'pysock-linger[{server}]'" in text, text


@pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None, reason="gunicorn not installed")
def test_import_with_gunicorn_internals_missing_fails() -> None:
    code = (
        "import gunicorn.util\n"
        "del gunicorn.util.close_graceful\n"
        "try:\n"
        "    import pysock.integrations.gunicorn\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "close_graceful" in out.stdout and "pysock-linger[gunicorn]" in out.stdout, (
        out.stdout + out.stderr
    )


def test_importing_pysock_imports_no_server() -> None:
    code = (
        "import sys, pysock, pysock.integrations\n"
        "print(sorted(m for m in ('gunicorn', 'cheroot', 'waitress') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
