"""The registry of supported servers (pysock.integrations._registry) is the
one list: README's server table, pyproject's extras, the integrations'
docstring table and the probe's fix hints agree with it, and every
integration imports or names the extra to install."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import pysock.integrations
from pysock._probe import FIXES
from pysock.integrations._registry import SERVERS, Server, by_name, oldest_requirements

ROOT = Path(__file__).resolve().parent.parent
# pyproject's extras that are not a server's (dev tooling, while they are extras)
NOT_SERVERS = {"test", "dev"}
_REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)")


def _source(name: str) -> str:
    path = ROOT / name
    if not path.is_file():  # e.g. cibuildwheel's test directory: tests/ and pyproject only
        pytest.skip(f"no {name} beside tests/")
    return path.read_text(encoding="utf-8")


def readme_server_rows() -> list[str]:
    """The rows of the table under README's "## Servers" whose header is
    ``| server (versions tested) | turn it on |``."""
    text = _source("README.md")
    section = text.split("\n## Servers\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = lines.index("| server (versions tested) | turn it on |")
    assert re.fullmatch(r"\|\s*-+\s*\|\s*-+\s*\|", lines[start + 1]), lines[start + 1]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def pyproject_extras() -> dict[str, list[str]]:
    text = _source("pyproject.toml")
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")
    data: dict[str, Any] = tomllib.loads(text)
    extras: dict[str, list[str]] = data["project"].get("optional-dependencies", {})
    return extras


def _name(requirement: str) -> str:
    m = _REQUIREMENT.fullmatch(requirement.strip())
    assert m, requirement
    return m.group(1).lower().replace("_", "-").replace(".", "-")


def _release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_readme_table_is_the_registry() -> None:
    assert readme_server_rows() == [s.readme_row() for s in SERVERS]


def test_pyproject_extras_are_the_registry() -> None:
    extras = pyproject_extras()
    servers = {name: reqs for name, reqs in extras.items() if name not in NOT_SERVERS}
    assert servers == {s.extra: list(s.requirements) for s in SERVERS if s.extra is not None}


@pytest.mark.parametrize("server", SERVERS, ids=[s.name for s in SERVERS])
def test_oldest_pins_are_the_lower_bounds(server: Server) -> None:
    """One ``name==version`` pin per requirement, at its ``>=`` bound."""
    assert len(server.oldest) == len(server.requirements)
    for requirement, pin in zip(server.requirements, server.oldest, strict=True):
        name, _, version = pin.partition("==")
        assert _name(name) == _name(requirement), (pin, requirement)
        lower = re.search(r">=\s*([0-9.]+)", requirement)
        assert lower, requirement
        assert _release(version) == _release(lower.group(1)), (pin, requirement)
    if server.extra is None:
        assert server.requirements == () and server.tested == "stdlib"


def test_registry_lookups() -> None:
    assert [s.name for s in SERVERS] == [
        "uvicorn", "gunicorn", "hypercorn", "socketserver", "cheroot", "waitress", "tornado",
    ]  # fmt: skip
    for s in SERVERS:
        assert by_name(s.name) is s
        assert s.module == f"pysock.integrations.{s.name}"
    with pytest.raises(KeyError, match="nginx"):
        by_name("nginx")
    assert oldest_requirements() == [pin for s in SERVERS for pin in s.oldest]
    assert "uvicorn==0.36.0" in oldest_requirements()


def test_integrations_docstring_lists_the_registry() -> None:
    doc = pysock.integrations.__doc__ or ""
    listed = re.findall(r"^``(pysock\.integrations\.\w+)``", doc, re.MULTILINE)
    assert listed == [s.module for s in SERVERS]


def test_probe_fixes_are_the_registry() -> None:
    assert [module for module, _ in FIXES.values()] == [s.module for s in SERVERS]
    assert list(FIXES) == ["http.server" if s.name == "socketserver" else s.name for s in SERVERS]
    for (_, how), server in zip(FIXES.values(), SERVERS, strict=True):
        assert f"`{how}`" in server.how


def test_every_integration_imports_or_names_its_extra() -> None:
    """In a fresh interpreter: each module imports, or raises an ImportError
    that names the extra to install (a server not installed here)."""
    modules = [s.module for s in SERVERS]
    code = textwrap.dedent(
        f"""
        import importlib, json
        out = {{}}
        for module in {modules!r}:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                out[module] = str(exc)
            else:
                out[module] = None
        print(json.dumps(out))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcome: dict[str, str | None] = json.loads(proc.stdout)
    for s in SERVERS:
        error = outcome[s.module]
        if error is None:
            continue
        assert s.extra is not None, f"{s.module} (stdlib) failed to import: {error}"
        assert f"pysock-linger[{s.extra}]" in error, error
