"""The integration suite: marked ``integration`` (``pytest -m integration``
runs only it, ``-m 'not integration'`` leaves it out; plain ``pytest`` runs
it too).  Needs the servers and clients of the test dependencies, and curl:
skipped without them (the wheel test venv has only pytest), except when
PYSOCK_REQUIRE_INTEGRATION=1, where a missing one fails."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_NEEDED = ("httpx", "requests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
    for item in items:
        if not str(item.path).startswith(HERE + os.sep):
            continue
        item.add_marker(pytest.mark.integration)
        if sys.platform == "win32":
            item.add_marker(pytest.mark.skip(reason="the integration suite runs on POSIX"))
        elif missing and os.environ.get("PYSOCK_REQUIRE_INTEGRATION") != "1":
            item.add_marker(pytest.mark.skip(reason=f"not installed: {', '.join(missing)}"))
