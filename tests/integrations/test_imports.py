"""Importing: ``import pysock`` never imports a server; an integration whose
server is missing (or lacks the internals it needs) raises an ImportError
that names the extra to install.  Each case runs in a fresh interpreter,
with the server made unimportable by ``sys.modules[name] = None``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SERVERS = ("uvicorn", "hypercorn", "tornado", "h11", "httptools", "gunicorn", "cheroot", "waitress")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_pysock_imports_no_server() -> None:
    proc = run(
        f"""
        import sys
        import pysock, pysock.aio, pysock.integrations
        pysock.integrations.policy(); pysock.integrations.stats()
        loaded = sorted(m for m in {SERVERS!r} if m in sys.modules)
        print(loaded)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "blocked"),
    [
        ("uvicorn", "uvicorn"),
        ("uvicorn", "h11"),
        ("hypercorn", "hypercorn"),
        ("tornado", "tornado"),
    ],
)
def test_missing_server_names_the_extra(module: str, blocked: str) -> None:
    proc = run(
        f"""
        import sys
        sys.modules[{blocked!r}] = None
        try:
            import pysock.integrations.{module}
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            print("imported")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError:"), proc.stdout
    assert f"pip install 'pysock-linger[{module}]'" in proc.stdout


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


@pytest.mark.parametrize(
    ("module", "prepare", "missing"),
    [
        (
            "hypercorn",
            "import hypercorn.asyncio.tcp_server as t; del t.TCPServer._close",
            "TCPServer._close",
        ),
        (
            "tornado",
            "import tornado.iostream as t; del t.IOStream.close_fd",
            "IOStream.close_fd",
        ),
        (
            "uvicorn",
            "import uvicorn.protocols.http.h11_impl as t; del t.H11Protocol.send_400_response",
            "H11Protocol.send_400_response",
        ),
    ],
)
def test_missing_internals_fail_at_import(module: str, prepare: str, missing: str) -> None:
    """A server release without the internals an integration reaches into:
    a clear ImportError at startup, never a silent plain close."""
    proc = run(
        f"""
        {prepare}
        try:
            import pysock.integrations.{module}
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            print("imported")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError:"), proc.stdout
    assert missing in proc.stdout and f"pysock-linger[{module}]" in proc.stdout
