"""Importing, for every server in pysock.integrations._registry.SERVERS:
``import pysock`` never imports a server; an integration whose server is
missing (or lacks the internals it needs) raises an ImportError that names
the extra to install.  Each case runs in a fresh interpreter, with the
server made unimportable by ``sys.modules[name] = None``."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from pysock.integrations._registry import SERVERS, Server, by_name

from .scenarios import ROOT, need

#: The servers that come from an extra (not the standard library's).
EXTRAS = [s for s in SERVERS if s.extra]


def _modules(server: Server) -> list[str]:
    """The top-level modules the server's extra installs (uvicorn's: its
    HTTP/1.1 parser, h11, too)."""
    names = (re.match(r"[A-Za-z0-9._-]+", r) for r in server.requirements)
    found = [m.group().replace("-", "_").lower() for m in names if m]
    return [*found, "h11"] if server.name == "uvicorn" else found


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def import_fails(module: str, prepare: str) -> str:
    """Run ``prepare``, then import ``module``: the ImportError's text
    (fails the test if the import worked)."""
    proc = run(
        f"""
        {prepare}
        try:
            import {module}
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            print("imported")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError:"), proc.stdout
    return proc.stdout


@pytest.mark.parametrize("server", EXTRAS, ids=[s.name for s in EXTRAS])
def test_import_pysock_imports_no_server(server: Server) -> None:
    proc = run(
        f"""
        import sys
        import pysock, pysock.aio, pysock.integrations
        pysock.integrations.policy(); pysock.integrations.stats()
        loaded = sorted(m for m in {_modules(server)!r} if m in sys.modules)
        print(loaded)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


#: (server, the module made missing): each server itself; uvicorn's h11 too.
MISSING = [(s, s.name) for s in EXTRAS] + [(by_name("uvicorn"), "h11")]


@pytest.mark.parametrize(
    ("server", "blocked"), MISSING, ids=[f"{s.name}-{blocked}" for s, blocked in MISSING]
)
def test_missing_server_names_the_extra(server: Server, blocked: str) -> None:
    text = import_fails(server.module, f"import sys; sys.modules[{blocked!r}] = None")
    assert f"pip install 'pysock-linger[{server.extra}]'" in text, text


def test_httptools_protocol_needs_httptools() -> None:
    """H11Protocol needs only uvicorn; HttpToolsProtocol names the extra."""
    proc = run(
        """
        import sys
        sys.modules["httptools"] = None
        import pysock.integrations.uvicorn as u
        print(u.H11Protocol.__name__)
        try:
            u.HttpToolsProtocol
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "H11Protocol"
    assert second.startswith("ImportError:") and "pysock-linger[uvicorn]" in second


def test_uvicorn_by_import_string_reports_the_extra() -> None:
    """uvicorn's own --http loading passes our ImportError through."""
    proc = run(
        """
        import sys
        sys.modules["httptools"] = None
        from uvicorn.importer import import_from_string
        try:
            import_from_string("pysock.integrations.uvicorn:HttpToolsProtocol")
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "pysock-linger[uvicorn]" in proc.stdout, proc.stdout


#: server -> (what takes the internal away, the internal's name)
INTERNALS = {
    "hypercorn": (
        "import hypercorn.asyncio.tcp_server as t; del t.TCPServer._close",
        "TCPServer._close",
    ),
    "tornado": ("import tornado.iostream as t; del t.IOStream.close_fd", "IOStream.close_fd"),
    "uvicorn": (
        "import uvicorn.protocols.http.h11_impl as t; del t.H11Protocol.send_400_response",
        "H11Protocol.send_400_response",
    ),
    "gunicorn": ("import gunicorn.util; del gunicorn.util.close_graceful", "close_graceful"),
}


@pytest.mark.parametrize("name", list(INTERNALS))
def test_missing_internals_fail_at_import(name: str) -> None:
    """A server release without the internals an integration reaches into:
    a clear ImportError at startup, never a silent plain close.  Without
    the server, gunicorn's case is skipped (failed with
    PYSOCK_REQUIRE_INTEGRATION=1); the others fail, as they always did."""
    server = by_name(name)
    if name == "gunicorn":
        need(name)
    prepare, missing = INTERNALS[name]
    text = import_fails(server.module, prepare)
    assert missing in text and f"pysock-linger[{server.extra}]" in text, text
