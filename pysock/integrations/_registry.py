"""The one list of the servers pysock integrates with.

Everything else that names the servers reads it or is checked against it:
the probe's fix hint (``pysock probe``), the import tests
(tests/integrations/test_imports.py), and tests/test_registry.py, which
checks README.md's server table and pyproject.toml's extras against it.
CI's oldest-versions step installs :func:`oldest_requirements`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SERVERS", "Server", "by_name", "oldest_requirements"]


@dataclass(frozen=True)
class Server:
    """One supported server and its integration."""

    #: the integration's name: ``pysock.integrations.<name>``
    name: str
    #: the integration's module
    module: str
    #: how a user turns it on: the README table's text (Markdown)
    how: str
    #: the pip extra that installs the server (``pysock-linger[<extra>]``),
    #: None for the standard library's
    extra: str | None
    #: the extra's requirement strings, exactly as in pyproject.toml
    requirements: tuple[str, ...]
    #: pins of the oldest supported versions (the requirements' lower bounds)
    oldest: tuple[str, ...]
    #: the versions tested: the README table's text
    tested: str
    #: what the README table calls the server, when not ``name``
    title: str = ""

    def readme_row(self) -> str:
        """The server's row in the README's table."""
        return f"| {self.title or self.name} ({self.tested}) | {self.how} |"


#: In the README's order.
SERVERS: tuple[Server, ...] = (
    Server(
        name="uvicorn",
        module="pysock.integrations.uvicorn",
        how=(
            "`uvicorn app:app --http pysock.integrations.uvicorn:H11Protocol` "
            "(or `:HttpToolsProtocol`; `uvicorn.Config(http=...)`)"
        ),
        extra="uvicorn",
        requirements=("uvicorn>=0.36,<0.55", "httptools>=0.6"),
        oldest=("uvicorn==0.36.0", "httptools==0.6.0"),
        tested="0.36.0, 0.54.0",
    ),
    Server(
        name="gunicorn",
        module="pysock.integrations.gunicorn",
        how=(
            "`gunicorn -k pysock.integrations.gunicorn.ThreadWorker app:app` "
            "(or `.SyncWorker`, `.UvicornWorker`)"
        ),
        extra="gunicorn",
        requirements=("gunicorn>=26.0,<28", "uvicorn-worker>=0.4,<0.5"),
        oldest=("gunicorn==26.0.0", "uvicorn-worker==0.4.0"),
        tested="26.0.0, 27.0.1; uvicorn-worker 0.4.0",
    ),
    Server(
        name="hypercorn",
        module="pysock.integrations.hypercorn",
        how="`asyncio.run(pysock.integrations.hypercorn.serve(app, config))`",
        extra="hypercorn",
        requirements=("hypercorn>=0.17.3,<0.19",),
        oldest=("hypercorn==0.17.3",),
        tested="0.17.3, 0.18.0",
    ),
    Server(
        name="socketserver",
        module="pysock.integrations.socketserver",
        how=(
            "`class Server(pysock.integrations.socketserver.LingeringCloseMixin, "
            "http.server.ThreadingHTTPServer)`"
        ),
        extra=None,
        requirements=(),
        oldest=(),
        tested="stdlib",
        title="http.server / socketserver",
    ),
    Server(
        name="cheroot",
        module="pysock.integrations.cheroot",
        how=(
            "`pysock.integrations.cheroot.Server(addr, app).start()` "
            "(same constructor as `cheroot.wsgi.Server`)"
        ),
        extra="cheroot",
        requirements=("cheroot>=10.0.1,<12",),
        oldest=("cheroot==10.0.1",),
        tested="10.0.1, 11.1.2",
    ),
    Server(
        name="waitress",
        module="pysock.integrations.waitress",
        how="`pysock.integrations.waitress.serve(app, host=..., port=...)`",
        extra="waitress",
        requirements=("waitress>=3.0,<3.1",),
        oldest=("waitress==3.0.0",),
        tested="3.0.0, 3.0.2",
    ),
    Server(
        name="tornado",
        module="pysock.integrations.tornado",
        how="`pysock.integrations.tornado.HTTPServer(app).listen(port)`",
        extra="tornado",
        requirements=("tornado>=6.4,<6.7",),
        oldest=("tornado==6.4",),
        tested="6.4, 6.6.1",
    ),
)

_BY_NAME = {s.name: s for s in SERVERS}


def by_name(name: str) -> Server:
    """The server called ``name`` (KeyError if none is)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no server {name!r}; known: {', '.join(_BY_NAME)}") from None


def oldest_requirements() -> list[str]:
    """Every server's oldest-version pins, for one environment."""
    return [pin for s in SERVERS for pin in s.oldest]
