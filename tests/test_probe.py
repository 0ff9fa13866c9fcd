"""``pysock probe``: against small servers over loopback, started here in a
thread: one that answers 413 early and closes plainly (the trap), the same
with a lingering close (the cure), one that reads the whole body first."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from support import WINE, KiB, MiB

import pysock
from pysock.__main__ import main
from pysock._probe import ProbeResult, parse_size, probe, recognise

RESPONSE_BODY = b"r" * (256 * KiB)


def _head(sock: socket.socket) -> bytes:
    """Read up to the end of the request head; returns what was read."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(64 * KiB)
        assert data, "the client closed before its request head"
        buf += data
    return buf


def _response(status: str, body: bytes, server: str | None = None, extra: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    if server:
        lines.append(f"Server: {server}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode() + body


class Server:
    """A loopback server: one thread accepting, each connection handled in
    turn by ``handle(conn)``; stopped (and joined) by :meth:`stop`."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.lst = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.lst.getsockname()[1]}/upload"
        self.handle = handle
        self.errors: list[BaseException] = []
        self.results: list[pysock.CloseResult] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.lst.accept()
            except OSError:
                return  # stopped
            try:
                conn.settimeout(10)
                self.handle(conn)
            except BaseException as exc:
                self.errors.append(exc)
                conn.close()

    def stop(self) -> None:
        if self.lst.fileno() == -1:
            return  # stopped already
        if sys.platform.startswith("linux"):  # wakes the accept() blocked on it
            self.lst.shutdown(socket.SHUT_RDWR)
        self.lst.close()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], Server]]:
    servers: list[Server] = []

    def start(handle: Callable[[socket.socket], None]) -> Server:
        s = Server(handle)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def early_413(close: Callable[[socket.socket], object], server: str | None = "uvicorn"):
    """Answer 413 + 256 KiB after the head, the body unread, then close."""

    def handle(conn: socket.socket) -> None:
        _head(conn)
        # The whole response fits in the send buffer: sendall returns at once,
        # and what the client's window has not taken yet is still here at close.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 * MiB)
        conn.sendall(_response("413 Payload Too Large", RESPONSE_BODY, server))
        close(conn)

    return handle


def drain(
    results: list[pysock.CloseResult], done: threading.Semaphore | None = None
) -> Callable[[socket.socket], object]:
    def close(conn: socket.socket) -> None:
        results.append(pysock.close(conn, pysock.Drain(timeout=10)))
        if done is not None:
            done.release()

    return close


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["probe", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out)


# -- the trap and its cure ----------------------------------------------------


def test_plain_close_shows_the_trap_and_exits_1(serve, capsys):
    server = serve(early_413(lambda conn: conn.close()))
    codes = []
    for _ in range(5):  # a reader as fast as this one may win the race now and then
        code, res = run_json([server.url, "--body", "64MiB"], capsys)
        codes.append(code)
        assert res["status"] == 413
        if WINE and res["outcome"] == "truncated":
            # Wine reads the RST as EOF: the cut shows, the reset does not.
            assert (code, res["end"]) == (1, "fin"), res
            assert res["body_received"] < 256 * KiB
            break
        assert res["trap"] is True, res
        if code == 1:
            assert res["outcome"] == "reset" and res["end"] == "rst"
            assert res["phase"] == "in body"
            assert res["body_received"] < 256 * KiB
            assert res["content_length"] == 256 * KiB
            break
        # Whole this time, but the reset that followed is reported.
        assert (code, res["outcome"], res["after"]) == (0, "whole", "rst")
    assert 1 in codes, codes
    assert not server.errors
    code = main(["probe", server.url])
    text = capsys.readouterr().out
    if code == 1 and not WINE:
        assert "outcome: reset: RST (ECONNRESET) in body" in text
        assert "verdict: TRAP: the 413 response was cut off by a reset (RST)" in text
    assert "fix (uvicorn): pysock.integrations.uvicorn" in text
    assert "--http pysock.integrations.uvicorn:H11Protocol" in text


def test_drain_close_is_whole_and_exits_0(serve, capsys):
    results: list[pysock.CloseResult] = []
    closed = threading.Semaphore(0)
    server = serve(early_413(drain(results, closed)))
    code, res = run_json([server.url, "--body", "64MiB"], capsys)
    assert code == 0, res
    assert (res["outcome"], res["after"], res["trap"]) == ("whole", "fin", False)
    assert res["body_received"] == res["content_length"] == 256 * KiB
    assert res["first_byte"] <= res["complete"]
    assert closed.acquire(timeout=10)  # the server is back in accept()
    code = main(["probe", server.url, "--body", "64MiB", "--expect", "413"])
    text = capsys.readouterr().out
    assert code == 0
    assert "outcome: whole, then FIN (EOF)" in text
    # OK either way; under load the drain may take the whole body before the
    # probe reads the response, which the verdict then says.
    assert "verdict: OK: " in text
    assert "fix" not in text  # nothing to fix
    server.stop()
    # The server saw the probe stop sending and close: its drain ended at EOF.
    assert [(r.how, r.reason) for r in results] == [("graceful", "eof")] * 2
    assert not server.errors


def test_server_that_reads_the_whole_body(serve, capsys):
    def handle(conn: socket.socket) -> None:
        head = _head(conn)
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        got = len(head) - head.index(b"\r\n\r\n") - 4
        while got < length:
            data = conn.recv(256 * KiB)
            assert data
            got += len(data)
        conn.sendall(_response("200 OK", b"got %d" % got, "BaseHTTP/0.6 Python/3.11"))
        conn.close()

    server = serve(handle)
    code, res = run_json([server.url, "--body", "1M", "--method", "PUT"], capsys)
    assert code == 0, res
    assert res["outcome"] == "whole" and res["status"] == 200
    assert res["body_sent"] == res["body_sent_before_response"] == 1 * MiB
    assert res["recognised"] == "http.server"
    assert "did not test an early response" in res["verdict"]
    assert not server.errors


def test_expect_mismatch_exits_1(serve, capsys):
    server = serve(early_413(drain([])))
    code, res = run_json([server.url, "--body", "64K", "--expect", "200"], capsys)
    assert code == 1
    assert res["outcome"] == "whole" and res["status"] == 413
    assert "not the --expect-ed 200" in res["verdict"]


def test_chunked_and_close_delimited_responses_are_read_whole(serve, capsys):
    def chunked(conn: socket.socket) -> None:
        _head(conn)
        conn.sendall(
            b"HTTP/1.1 413 Payload Too Large\r\nTransfer-Encoding: chunked\r\n"
            b"Server: TornadoServer/6.4\r\n\r\n"
            b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        pysock.close(conn, pysock.Drain(timeout=10))

    def until_close(conn: socket.socket) -> None:
        _head(conn)
        conn.sendall(b"HTTP/1.0 413 Too Large\r\n\r\n" + b"z" * 1000)
        pysock.close(conn, pysock.Drain(timeout=10))

    for handle, body, name in ((chunked, 11, "tornado"), (until_close, 1000, None)):
        server = serve(handle)
        code, res = run_json([server.url, "--body", "256KiB"], capsys)
        assert code == 0, res
        assert (res["outcome"], res["body_received"], res["recognised"]) == ("whole", body, name)


def test_server_that_closes_before_answering(serve, capsys):
    server = serve(lambda conn: (_head(conn), pysock.close(conn, pysock.Drain(timeout=10))))
    code, res = run_json([server.url, "--body", "64K"], capsys)
    assert code == 1
    assert (res["outcome"], res["end"], res["status"]) == ("closed", "fin", None)


def test_server_that_never_answers_times_out(serve, capsys):
    release = threading.Event()

    def handle(conn: socket.socket) -> None:
        _head(conn)
        release.wait(10)  # neither reads nor answers until the probe gave up
        conn.close()

    server = serve(handle)
    try:
        code, res = run_json([server.url, "--body", "64MiB", "--timeout", "0.5"], capsys)
    finally:
        release.set()
    assert code == 1
    assert (res["outcome"], res["end"], res["status"]) == ("timeout", "timeout", None)
    assert 0 < res["body_sent"] < 64 * MiB
    assert "NO WHOLE RESPONSE" in res["verdict"]


# -- recognising the server -----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("uvicorn", "uvicorn"),
        ("gunicorn", "gunicorn"),
        ("hypercorn-h11", "hypercorn"),
        ("BaseHTTP/0.6 Python/3.12.1", "http.server"),
        ("SimpleHTTP/0.6 Python/3.12.1", "http.server"),
        ("CherryPy/18.9.0", "cheroot"),
        ("Cheroot/10.0.1", "cheroot"),
        ("waitress", "waitress"),
        ("TornadoServer/6.4.1", "tornado"),
        ("nginx/1.25", None),
        (None, None),
    ],
)
def test_recognise(header, key):
    assert recognise(header) == key


def test_server_header_names_the_fix(serve, capsys):
    server = serve(early_413(lambda conn: conn.close(), server="uvicorn"))
    main(["probe", server.url])
    text = capsys.readouterr().out
    assert "server: uvicorn" in text
    assert (
        "fix (uvicorn): pysock.integrations.uvicorn -- uvicorn app:app "
        "--http pysock.integrations.uvicorn:H11Protocol"
    ) in text


def test_server_named_by_the_user(serve, capsys):
    server = serve(early_413(lambda conn: conn.close(), server=None))
    _, res = run_json([server.url, "--server", "gunicorn"], capsys)
    assert res["server"] is None and res["recognised"] == "gunicorn"
    assert res["fix"]["module"] == "pysock.integrations.gunicorn"
    assert "ThreadWorker" in res["fix"]["how"]
    main(["probe", server.url, "--server", "socketserver"])
    text = capsys.readouterr().out
    assert "pysock.integrations.socketserver" in text and "LingeringCloseMixin" in text


# -- errors ---------------------------------------------------------------------


def test_refused_connection_exits_2(capsys):
    with socket.create_server(("127.0.0.1", 0)) as lst:
        port = lst.getsockname()[1]  # closed at the end of the block: nobody listens
    code = main(["probe", f"http://127.0.0.1:{port}/"])
    captured = capsys.readouterr()
    assert code == 2
    assert "pysock probe: the connection to" in captured.err and "refused" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ftp://127.0.0.1/"], "must start with http:// or https://"),
        (["http:///path"], "has no host"),
        (["http://u:p@127.0.0.1/"], "credentials"),
        (["http://127.0.0.1:99999/"], "bad port"),
        (["http://127.0.0.1/", "--body", "8XB"], "bad size '8XB'"),
        (["http://127.0.0.1/", "--body", "-1"], "bad size"),
        (["http://127.0.0.1/", "--header", "no colon"], "expected 'Name: value'"),
        (["http://127.0.0.1/", "--header", "Content-Length: 3"], "not allowed"),
        (["http://127.0.0.1/", "--header", "Transfer-Encoding: chunked"], "not allowed"),
        (["http://127.0.0.1/", "--method", "GE T"], "bad --method"),
        (["http://127.0.0.1/", "--expect", "abc"], "bad --expect"),
        (["http://127.0.0.1/", "--expect", "42"], "--expect must be an HTTP status"),
        (["http://127.0.0.1/", "--timeout", "0"], "--timeout must be"),
        (["http://127.0.0.1/", "--timeout", "soon"], "bad --timeout"),
        (["http://127.0.0.1/", "--server", "nginx"], "unknown --server 'nginx'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    code = main(["probe", *argv])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.out == ""


def test_missing_url_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["probe"])
    assert info.value.code == 2
    assert "URL" in capsys.readouterr().err


def test_parse_size():
    assert parse_size("8MiB") == parse_size("8M") == parse_size("8m") == 8 * MiB
    assert parse_size("512k") == parse_size("512KiB") == parse_size("512KB") == 512 * KiB
    assert parse_size("1G") == 1 << 30
    assert parse_size("100") == 100
    assert parse_size("0") == 0


def test_probe_api_returns_a_result(serve):
    server = serve(early_413(drain([])))
    res = probe(server.url, body=256 * KiB, headers=[("X-Test", "1")], timeout=10)
    assert isinstance(res, ProbeResult)
    assert (res.outcome, res.exit_status, res.server) == ("whole", 0, "uvicorn")


def test_python_m_pysock_probe(serve):
    server = serve(early_413(drain([])))
    proc = subprocess.run(
        [sys.executable, "-m", "pysock", "probe", server.url, "--body", "1MiB"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdict: OK" in proc.stdout


# -- https ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a certificate")
    d = tmp_path_factory.mktemp("cert")
    key, crt = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt, key


def tls_413(cert: tuple[str, str], cure: bool) -> Callable[[socket.socket], None]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)

    def handle(conn: socket.socket) -> None:
        tls = ctx.wrap_socket(conn, server_side=True)
        _head(tls)
        tls.sendall(_response("413 Payload Too Large", RESPONSE_BODY, "waitress"))
        if cure:  # shut down, read to the client's EOF, close (raw TCP, no close_notify)
            tls.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                while tls.recv(256 * KiB):
                    pass
        tls.close()

    return handle


def test_https_trap_and_cure(serve, cert, capsys):
    url = serve(tls_413(cert, cure=False)).url.replace("http:", "https:")
    code, res = run_json([url, "--insecure", "--body", "64MiB"], capsys)
    assert code == 1, res
    assert res["outcome"] in ("reset", "truncated") and res["status"] == 413
    assert res["body_received"] < 256 * KiB
    if sys.platform.startswith("linux"):  # told apart by TCP_INFO: OpenSSL calls both EOF
        assert (res["outcome"], res["end"], res["trap"]) == ("reset", "rst", True)
    assert res["fix"]["module"] == "pysock.integrations.waitress"
    url = serve(tls_413(cert, cure=True)).url.replace("http:", "https:")
    code, res = run_json([url, "--insecure", "--body", "64MiB"], capsys)
    assert code == 0, res
    assert (res["outcome"], res["body_received"]) == ("whole", 256 * KiB)


def test_https_verifies_the_certificate(serve, cert, capsys, monkeypatch):
    url = serve(tls_413(cert, cure=True)).url.replace("http:", "https:")
    code = main(["probe", url, "--body", "64K"])
    captured = capsys.readouterr()
    assert code == 2
    assert "TLS failed" in captured.err and "certificate verify failed" in captured.err
    monkeypatch.setenv("SSL_CERT_FILE", cert[0])  # now it is trusted
    code, res = run_json([url, "--body", "64K"], capsys)
    assert code == 0 and res["outcome"] == "whole"
