"""``pysock probe URL``: does a running server lose its early responses?

It sends one request with a body (Content-Length, not chunked), and reads
the response as soon as it arrives while it sends, as a careful client
(curl, httpx) does; it stops sending when the response is complete or the
server closes.  Then it reports what this client saw: the response whole,
truncated at N of M bytes, or reset before or after the status line; FIN
(``recv`` returned ``b""``) or RST (ECONNRESET); how much of the body was
sent before the response began; timings; a one-line verdict; and, when it
recognises the server (its ``Server:`` header, or ``--server``), the pysock
integration that fixes it (the servers are pysock.integrations._registry's).

Only the standard library; it connects only to the URL given (no redirects
are followed, no other host is contacted).  Exit status: 0 when the
response arrived whole (and had the ``--expect``-ed status), 1 when it did
not, 2 for bad arguments or when the connection could not be made.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import selectors
import socket
import ssl
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from pysock._http import ResponseParser
from pysock.integrations._registry import SERVERS

__all__ = ["FIXES", "ProbeResult", "main", "parse_size", "probe"]

#: The probe's name for a server where it is not the registry's: the
#: standard library's server is reported by its http.server name.
_PROBE_NAMES = {"socketserver": "http.server"}


def _hint(how: str) -> str:
    """The command (or code) that turns an integration on: the first code
    span of the registry's ``how``."""
    spans = how.split("`")
    return spans[1] if len(spans) > 2 else how


#: server -> (the module, how a user turns it on), from the registry
FIXES: dict[str, tuple[str, str]] = {
    _PROBE_NAMES.get(s.name, s.name): (s.module, _hint(s.how)) for s in SERVERS
}
# --server NAME: the names accepted (each registry name among them), to the
# table's key.
_ALIASES = {
    **{s.name: _PROBE_NAMES.get(s.name, s.name) for s in SERVERS},
    "http.server": "http.server",
    "basehttp": "http.server",
    "cherrypy": "cheroot",
}
# A Server: header (lowercased) containing this -> the table's key.
_SIGNATURES = (
    ("gunicorn", "gunicorn"),
    ("hypercorn", "hypercorn"),
    ("uvicorn", "uvicorn"),
    ("basehttp", "http.server"),
    ("simplehttp", "http.server"),
    ("cheroot", "cheroot"),
    ("cherrypy", "cheroot"),
    ("waitress", "waitress"),
    ("tornadoserver", "tornado"),
)

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE = re.compile(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", re.IGNORECASE)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CHUNK = 64 * 1024
#: After a whole response: how long to watch for the server's FIN or RST.
AFTER_WAIT = 0.5
_AFTER_MAX = 1 << 20


class UsageError(ValueError):
    """Bad arguments (exit status 2)."""


def parse_size(text: str) -> int:
    """``8MiB``, ``8M``, ``512k``, ``100`` (bytes): K, M, G are powers of
    1024 (KiB, MiB, GiB)."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise UsageError(
            f"bad size {text!r}: a whole number of bytes with an optional K, M or G "
            "(KiB, MiB, GiB: powers of 1024), e.g. 8MiB"
        )
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def recognise(server_header: str | None) -> str | None:
    """The table's key for a ``Server:`` header, or None."""
    if not server_header:
        return None
    low = server_header.lower()
    for sig, key in _SIGNATURES:
        if sig in low:
            return key
    return None


@dataclass
class ProbeResult:
    """What the probe saw.  Times are seconds from the start of sending the
    request (None: did not happen)."""

    url: str
    method: str
    body_size: int
    outcome: str = "none"  # whole | truncated | reset | closed | timeout
    end: str = "none"  # fin | rst | timeout: what ended the stream before the response was whole
    after: str | None = None  # after a whole response: fin | rst | open
    phase: str = "before status line"  # or "in headers", "in body", "complete"
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    server: str | None = None  # the Server: header
    recognised: str | None = None  # the table's key (from the header or --server)
    content_length: int | None = None
    body_received: int = 0
    bytes_received: int = 0
    body_sent: int = 0
    body_sent_before_response: int | None = None
    send_error: str | None = None
    connect_time: float | None = None
    first_byte: float | None = None
    complete: float | None = None
    ended: float | None = None
    expect: int | None = None
    verdict: str = ""
    trap: bool = False
    exit_status: int = 1


def _target(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, request target, Host header) or UsageError."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UsageError(f"the URL must start with http:// or https://, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise UsageError("credentials in the URL are not sent; use --header 'Authorization: ...'")
    host = parts.hostname
    if not host:
        raise UsageError(f"the URL has no host: {url!r}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UsageError(f"bad port in {url!r}: {exc}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(c in target for c in "\r\n \t"):
        raise UsageError("the URL's path has whitespace or line breaks in it")
    netloc_host = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    host_header = netloc_host if port == default else f"{netloc_host}:{port}"
    return scheme, host, port, target, host_header


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.fullmatch(name):
        raise UsageError(f"bad --header {text!r}: expected 'Name: value'")
    if any(c in value for c in "\r\n\0"):
        raise UsageError(f"bad --header {text!r}: line breaks are not allowed")
    if name.lower() in ("content-length", "transfer-encoding"):
        raise UsageError(
            f"--header {name} is not allowed: the probe sends Content-Length itself "
            "(set the size with --body)"
        )
    return name, value


def _closed_by(sock: socket.socket, default: str) -> str:
    """After an end of stream (recv gave b"", or TLS reported an EOF): "rst"
    if the kernel's TCP state says the connection was reset (CLOSE: no FIN
    handshake, so an RST), "fin" if the peer's FIN left it in CLOSE_WAIT.
    Linux only (TCP_INFO); elsewhere ``default``.  TLS needs this: OpenSSL
    reports a reset as an EOF."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None or not sys.platform.startswith("linux"):
        return default
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)[0]
    except OSError:
        return default
    return {7: "rst", 8: "fin"}.get(state, default)  # TCP_CLOSE, TCP_CLOSE_WAIT


def _is_reset(exc: OSError) -> bool:
    return isinstance(exc, (ConnectionResetError, ConnectionAbortedError)) or exc.errno in (
        errno.ECONNRESET,
        errno.ECONNABORTED,
    )


def probe(
    url: str,
    *,
    body: int = 8 << 20,
    method: str = "POST",
    headers: list[tuple[str, str]] | None = None,
    timeout: float = 30.0,
    expect: int | None = None,
    server: str | None = None,
    insecure: bool = False,
) -> ProbeResult:
    """Run one probe (see the module).  Raises :class:`UsageError` for bad
    arguments and ``OSError`` when the connection cannot be made."""
    if not _TOKEN.fullmatch(method):
        raise UsageError(f"bad --method {method!r}")
    if not timeout > 0 or timeout != timeout or timeout == float("inf"):
        raise UsageError(f"--timeout must be a finite number of seconds > 0, got {timeout!r}")
    if body < 0:
        raise UsageError("--body must be >= 0")
    if expect is not None and not 100 <= expect <= 999:
        raise UsageError(f"--expect must be an HTTP status (100-999), got {expect}")
    named = None
    if server is not None:
        named = _ALIASES.get(server.lower())
        if named is None:
            raise UsageError(f"unknown --server {server!r}; known: {', '.join(sorted(_ALIASES))}")
    scheme, host, port, target, host_header = _target(url)
    extra = list(headers or [])
    given = {n.lower() for n, _ in extra}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {host_header}")
    if "user-agent" not in given:
        lines.append("User-Agent: pysock-probe")
    if "connection" not in given:
        lines.append("Connection: close")
    lines.append(f"Content-Length: {body}")
    lines += [f"{n}: {v}" for n, v in extra]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    res = ProbeResult(url=url, method=method, body_size=body, expect=expect)
    t0 = time.monotonic()
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if scheme == "https":
            ctx = ssl.create_default_context()
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=host)
        res.connect_time = time.monotonic() - t0
        _exchange(sock, head, body, method.upper() == "HEAD", timeout, res)
    finally:
        sock.close()
    res.recognised = named or recognise(res.server)
    _judge(res)
    return res


def _exchange(
    sock: socket.socket,
    head: bytes,
    body: int,
    head_request: bool,
    timeout: float,
    res: ProbeResult,
) -> None:
    sock.setblocking(False)
    tls = isinstance(sock, ssl.SSLSocket)
    parser = ResponseParser(head_request)
    start = time.monotonic()
    deadline = start + timeout
    chunk = memoryview(b"x" * _CHUNK)
    pending = memoryview(head)  # what is left of the current piece to send
    body_left = body
    sending = True
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    ended = False

    def on_data(data: bytes) -> None:
        now = time.monotonic() - start
        if res.first_byte is None:
            res.first_byte = now
            res.body_sent_before_response = res.body_sent
        res.bytes_received += len(data)
        parser.feed(data)
        if parser.complete and res.complete is None:
            res.complete = now

    try:
        while not parser.complete and not ended:
            now = time.monotonic()
            if now >= deadline:
                res.end = "timeout"
                break
            sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if sending else 0))
            events = sel.select(deadline - now)
            mask = 0
            for _, m in events:
                mask |= m
            if mask & selectors.EVENT_READ or (tls and sock.pending()):  # type: ignore[attr-defined]
                while True:
                    try:
                        data = sock.recv(256 * 1024)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        break
                    except ssl.SSLEOFError:
                        data = b""
                    except OSError as exc:
                        if not _is_reset(exc):
                            raise
                        res.end = "rst"
                        ended = True
                        break
                    if not data:
                        res.end = _closed_by(sock, "rst" if res.send_error == "reset" else "fin")
                        ended = True
                        break
                    on_data(data)
                    if parser.complete:
                        break
            if mask & selectors.EVENT_WRITE and sending and not ended and not parser.complete:
                try:
                    while True:
                        if not pending:
                            if not body_left:
                                sending = False
                                break
                            n = min(body_left, _CHUNK)
                            pending = chunk[:n]
                        n = sock.send(pending)
                        if pending.obj is chunk.obj:
                            res.body_sent += n
                            body_left -= n
                        pending = pending[n:]
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except OSError as exc:
                    # The server is gone; what it sent may still be readable.
                    sending = False
                    reset = _is_reset(exc) or _closed_by(sock, "") == "rst"
                    res.send_error = "reset" if reset else (exc.strerror or str(exc))
        if parser.complete:
            _watch_after(sock, sel, deadline, res)
    except ValueError as exc:  # a malformed response
        res.outcome = "malformed"
        res.verdict = f"the server's response is not HTTP/1.x as expected: {exc}"
    finally:
        sel.close()
    res.ended = time.monotonic() - start
    res.status, res.reason, res.headers = parser.status, parser.reason, parser.headers
    res.content_length, res.body_received = parser.content_length, parser.body
    for name, value in parser.headers:
        if name.lower() == "server":
            res.server = value
    if res.outcome == "malformed":
        return
    if parser.mode == "close" and res.end == "fin":
        parser.mode = "done"  # a close-delimited body ends with the FIN
        res.complete = res.ended
    if parser.complete:
        res.outcome = "whole"
        if res.after is None and res.end in ("fin", "rst"):
            res.after = res.end
        res.end = "none"
    elif res.end == "timeout":
        res.outcome = "timeout"
    elif res.end == "rst":
        res.outcome = "reset"
    else:
        res.outcome = "truncated" if parser.status is not None else "closed"
    if res.outcome == "whole":
        res.phase = "complete"
    elif parser.status is not None:
        res.phase = "in body"
    elif parser.in_headers:
        res.phase = "in headers"


def _watch_after(
    sock: socket.socket, sel: selectors.BaseSelector, deadline: float, res: ProbeResult
) -> None:
    """After a whole response: stop sending, and watch a moment for how the
    server ends the connection (FIN, RST, or still open)."""
    sel.modify(sock, selectors.EVENT_READ)
    until = min(deadline, time.monotonic() + AFTER_WAIT)
    got = 0
    while got < _AFTER_MAX:
        left = until - time.monotonic()
        if left <= 0 or not sel.select(left):
            res.after = "open"
            return
        try:
            data = sock.recv(64 * 1024)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue
        except ssl.SSLEOFError:
            data = b""
        except OSError as exc:
            if _is_reset(exc):
                res.after = "rst"
                return
            raise
        if not data:
            res.after = _closed_by(sock, "rst" if res.send_error == "reset" else "fin")
            return
        got += len(data)
    res.after = "open"


def _n(x: int) -> str:
    return f"{x:,}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{_n(n)} bytes"


def _judge(res: ProbeResult) -> None:
    early = (
        res.body_sent_before_response is not None and res.body_sent_before_response < res.body_size
    )
    got = (
        f"{_n(res.body_received)} of {_n(res.content_length)}"
        if res.content_length is not None
        else f"{_n(res.body_received)}"
    )
    how = {"rst": "a reset (RST)", "fin": "the server's FIN", "timeout": "the timeout"}.get(
        res.end, res.end
    )
    if res.outcome == "malformed":
        res.exit_status = 1
        return
    if res.outcome == "whole":
        res.exit_status = 0
        sent = res.body_sent_before_response or 0
        if res.after == "rst":
            res.trap = True
            res.verdict = (
                "AT RISK: the response arrived whole this time, but the server "
                + (
                    f"answered after {_n(sent)} of {_n(res.body_size)} body bytes and then "
                    if early
                    else ""
                )
                + "reset the connection (it closed with the upload unread): a slower client "
                "or a longer path loses the response"
            )
        elif early:
            res.verdict = (
                f"OK: the server answered early (after {_n(sent)} of {_n(res.body_size)} body "
                "bytes) and the response arrived whole"
                + (", then FIN" if res.after == "fin" else "")
            )
        else:
            res.verdict = (
                "OK: the response arrived whole; the whole body had been sent before it began, "
                "so this request did not test an early response"
            )
        if res.expect is not None and res.status != res.expect:
            res.exit_status = 1
            res.verdict = (
                f"UNEXPECTED STATUS: the response arrived whole but its status is {res.status}, "
                f"not the --expect-ed {res.expect}"
            )
        return
    res.exit_status = 1
    if res.outcome == "timeout":
        res.verdict = (
            f"NO WHOLE RESPONSE: nothing complete within the timeout ({got} body bytes"
            f" received{'' if res.status is not None else ', no status line'})"
        )
        return
    res.trap = res.end == "rst" and (early or res.body_sent < res.body_size)
    if res.status is None:
        res.verdict = (
            f"{'TRAP' if res.trap else 'FAILED'}: the connection ended by {how} before a status "
            f"line arrived ({_n(res.bytes_received)} bytes received, {_n(res.body_sent)} of "
            f"{_n(res.body_size)} body bytes sent)"
        )
    else:
        res.verdict = (
            f"{'TRAP' if res.trap else 'TRUNCATED'}: the {res.status} response was cut off by "
            f"{how} after {got} body bytes"
            + (
                "; the server closed with the upload unread, and that close sent RST"
                if res.trap
                else ""
            )
        )


def render(res: ProbeResult, out: TextIO) -> None:
    w = out.write
    w(f"pysock probe: {res.method} {res.url}, body {_size(res.body_size)} (Content-Length)\n")
    if res.connect_time is not None:
        w(f"  connected in {res.connect_time * 1000:.1f} ms\n")
    before = res.body_sent_before_response
    w(
        f"  body sent: {_n(res.body_sent)} of {_n(res.body_size)} bytes"
        + (f", {_n(before)} of them before the first response byte" if before is not None else "")
        + (f"; sending failed: {res.send_error}" if res.send_error else "")
        + "\n"
    )
    if res.status is not None:
        w(f"  response: {res.status} {res.reason}".rstrip() + "\n")
        if res.server:
            w(f"  server: {res.server}\n")
        total = f" of {_n(res.content_length)}" if res.content_length is not None else ""
        w(f"  response body: {_n(res.body_received)}{total} bytes received\n")
    else:
        w(f"  response: no status line ({_n(res.bytes_received)} bytes received)\n")
    if res.outcome == "whole":
        after = {
            "fin": "FIN (EOF)",
            "rst": "RST (ECONNRESET)",
            "open": f"neither FIN nor RST within {AFTER_WAIT:g} s",
        }
        w(f"  outcome: whole, then {after.get(res.after or '', 'nothing seen')}\n")
    else:
        ended = {"rst": "RST (ECONNRESET)", "fin": "FIN (EOF)", "timeout": "timeout"}
        w(f"  outcome: {res.outcome}: {ended.get(res.end, res.end)} {res.phase}\n")

    def ms(t: float | None) -> str:
        return "-" if t is None else f"{t * 1000:.1f} ms"

    w(
        f"  timings (from the first byte sent): first response byte {ms(res.first_byte)}, "
        f"response complete "
        f"{ms(res.complete)}, end {ms(res.ended)}\n"
    )
    w(f"verdict: {res.verdict}\n")
    if res.recognised and (res.trap or res.outcome != "whole"):
        module, how = FIXES[res.recognised]
        w(f"fix ({res.recognised}): {module} -- {how}\n")
    elif res.trap:
        w(
            "fix: a lingering close (pysock.close(sock, pysock.Drain())); for a known server "
            f"name it with --server ({', '.join(FIXES)})\n"
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pysock probe",
        description="Check a running HTTP server for the early-response trap: send a request "
        "with a body, read the response while sending, and report whether it arrived whole.",
    )
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="http://host[:port]/path (https too)")
    p.add_argument("--body", default="8MiB", metavar="SIZE", help="body size (default 8MiB)")
    p.add_argument("--method", default="POST", help="request method (default POST)")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra request header (repeatable)",
    )
    p.add_argument("--expect", metavar="STATUS", help="the status the response should have")
    p.add_argument(
        "--timeout", default="30", metavar="SECONDS", help="for the whole exchange (default 30)"
    )
    p.add_argument(
        "--server", metavar="NAME", help=f"name the server ({', '.join(FIXES)}) for the fix hint"
    )
    p.add_argument("--insecure", action="store_true", help="https: do not verify the certificate")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The command, from parsed arguments; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        body = parse_size(args.body)
        headers = [_header(h) for h in args.header]
        try:
            timeout = float(args.timeout)
        except ValueError:
            raise UsageError(f"bad --timeout {args.timeout!r}: a number of seconds") from None
        expect = None
        if args.expect is not None:
            if not args.expect.isdigit():
                raise UsageError(f"bad --expect {args.expect!r}: an HTTP status such as 413")
            expect = int(args.expect)
        res = probe(
            args.url,
            body=body,
            method=args.method,
            headers=headers,
            timeout=timeout,
            expect=expect,
            server=args.server,
            insecure=args.insecure,
        )
    except UsageError as exc:
        err.write(f"pysock probe: {exc}\n")
        return 2
    except ssl.SSLError as exc:
        err.write(f"pysock probe: TLS failed with {args.url}: {exc}\n")
        return 2
    except OSError as exc:
        err.write(f"pysock probe: the connection to {args.url} failed: {exc.strerror or exc}\n")
        return 2
    if args.json:
        out.write(json.dumps(_jsonable(res), indent=2) + "\n")
    else:
        render(res, out)
    return res.exit_status


def _jsonable(res: ProbeResult) -> dict[str, Any]:
    d = asdict(res)
    d["headers"] = [list(h) for h in res.headers]
    if res.recognised:
        d["fix"] = dict(zip(("module", "how"), FIXES[res.recognised], strict=True))
    return d


def main(argv: list[str] | None = None) -> int:
    return run(_parser().parse_args(argv))
