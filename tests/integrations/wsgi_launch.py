"""Start a threaded server on 127.0.0.1 the way its users start it from
Python, plain or with pysock's integration::

    python tests/integrations/wsgi_launch.py cheroot [--pysock] --port N
    python tests/integrations/wsgi_launch.py waitress [--pysock] --port N [--max-body N]
    python tests/integrations/wsgi_launch.py socketserver [--pysock] --port N [--serial]

cheroot and waitress serve ``apps.wsgi_app``; socketserver serves the same
answers from an ``http.server`` handler (HTTP/1.1, keep-alive; the 413 says
``Connection: close`` because the unread body would otherwise be parsed as
the next request) on ``http.server.ThreadingHTTPServer`` (``--serial``: ``HTTPServer``, one
connection at a time).  SIGTERM stops the
server the way each one is stopped gracefully (SystemExit in the main
thread, then cheroot's ``stop()`` / socketserver's ``server_close()``;
waitress handles it in ``serve``).  The policy comes from the
``PYSOCK_DRAIN_*`` environment variables.  With ``PYSOCK_TEST_STATS=1`` the
integration's counters are printed at exit (``pysock-stats: ...``).
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apps import PAGE_BODY, SMALL, STREAM_CHUNK, STREAM_CHUNKS, wsgi_app

_serving = True
_resending = False


def _exit(signum: int, frame: Any) -> None:
    # SystemExit in the main thread stops each of these servers the way it
    # expects to be stopped.  A handler's exception can land where Python
    # ignores it (a weakref callback, a __del__), so until the main thread
    # has left the server, the signal is sent again every half second.
    global _resending
    if not _serving:
        return
    if not _resending:
        _resending = True
        threading.Thread(target=_resend, args=(signum,), daemon=True).start()
    raise SystemExit(0)


def _resend(signum: int) -> None:
    main = threading.main_thread().ident
    assert main is not None
    while True:
        time.sleep(0.5)
        if not _serving:
            return
        signal.pthread_kill(main, signum)


def _stopped() -> None:
    global _serving
    _serving = False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        # The body is never read: the early-response trap.
        self.send_response(413)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(PAGE_BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(PAGE_BODY)
        self.close_connection = True

    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(STREAM_CHUNK * STREAM_CHUNKS))
            self.end_headers()
            for _ in range(STREAM_CHUNKS):
                self.wfile.write(b"s" * STREAM_CHUNK)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(SMALL)))
        self.end_headers()
        self.wfile.write(SMALL)


def _log_closes() -> None:
    if os.environ.get("PYSOCK_TEST_LOG"):
        import logging

        log = logging.getLogger("pysock.integrations")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("pysock-log: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def _print_stats() -> None:
    if os.environ.get("PYSOCK_TEST_STATS"):
        from pysock.integrations import stats

        print(f"pysock-stats: {stats()}", flush=True)


def run_socketserver(port: int, pysock: bool, serial: bool) -> None:
    base: type[http.server.HTTPServer] = (
        http.server.HTTPServer if serial else http.server.ThreadingHTTPServer
    )
    cls = base
    if pysock:
        from pysock.integrations.socketserver import LingeringCloseMixin

        class Server(LingeringCloseMixin, base):  # type: ignore[valid-type,misc]
            pass

        cls = Server
    server = cls(("127.0.0.1", port), Handler)
    try:
        server.serve_forever()
    finally:
        _stopped()
        server.server_close()


def run_cheroot(port: int, pysock: bool) -> None:
    if pysock:
        from pysock.integrations.cheroot import Server
    else:
        from cheroot.wsgi import Server
    server = Server(("127.0.0.1", port), wsgi_app)
    try:
        server.start()
    finally:
        _stopped()
        server.stop()


def run_waitress(port: int, pysock: bool, max_body: int | None) -> None:
    if pysock:
        from pysock.integrations.waitress import serve
    else:
        from waitress import serve
    # waitress catches the SystemExit inside its run(); the signal must not
    # be sent again once its loop is left (serve then shuts down).
    from waitress import wasyncore

    loop = wasyncore.loop

    def loop_then_stopped(*args: Any, **kwargs: Any) -> None:
        try:
            loop(*args, **kwargs)
        finally:
            _stopped()

    wasyncore.loop = loop_then_stopped
    kw: dict[str, Any] = {"host": "127.0.0.1", "port": port, "_quiet": True}
    if max_body is not None:
        kw["max_request_body_size"] = max_body
    try:
        serve(wsgi_app, **kw)
    finally:
        _stopped()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("server", choices=["cheroot", "waitress", "socketserver"])
    parser.add_argument("--pysock", action="store_true", help="with pysock's integration")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-body", type=int, default=None, help="waitress only")
    parser.add_argument(
        "--serial", action="store_true", help="socketserver only: http.server.HTTPServer"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit)
    _log_closes()
    try:
        if args.server == "socketserver":
            run_socketserver(args.port, args.pysock, args.serial)
        elif args.server == "cheroot":
            run_cheroot(args.port, args.pysock)
        else:
            run_waitress(args.port, args.pysock, args.max_body)
    finally:
        _print_stats()


if __name__ == "__main__":
    main()
