"""Start a server that its users start from Python, as they would, serving
the test apps (apps.py) on 127.0.0.1, with its own close or with pysock's
integration (``--pysock``)::

    python tests/integrations/launch.py SERVER --port N [--pysock] [--debug] [options]

    tornado       HTTPServer(app).listen(port)           [--loop asyncio|uvloop]
    hypercorn     asyncio.run(serve(app, config))        [--loop ...] [--graceful-timeout S]
    cheroot       cheroot.wsgi.Server(addr, app).start()
    waitress      waitress.serve(app, host=, port=)      [--max-body N]
    socketserver  http.server.ThreadingHTTPServer        [--serial: HTTPServer]

tornado answers the early 413 from a ``@stream_request_body`` handler's
``prepare``; hypercorn, cheroot and waitress serve ``apps.asgi_app`` /
``apps.wsgi_app``; socketserver serves the same answers from an
``http.server`` handler (HTTP/1.1, keep-alive; the 413 says ``Connection:
close`` because the unread body would otherwise be parsed as the next
request).

SIGTERM starts each server's graceful shutdown the way it expects to be
stopped: the asyncio servers' shutdown trigger (SIGINT too), SystemExit in
the main thread for the threaded ones (then cheroot's ``stop()`` /
socketserver's ``server_close()``; waitress handles it in ``serve``).  The
process exits when the shutdown is over.  The policy comes from the
``PYSOCK_DRAIN_*`` environment variables.  ``--debug`` logs each lingering
close to stderr (``pysock-log: <server>: <how>/<reason>, drained ...``) and
prints the integration's counters at exit (``pysock-stats: ...``).

Another server: write ``run_<name>(args)`` (it runs the server until it
has shut down) and add it to SERVERS.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

if __package__:
    from . import apps
else:  # run as a script: its own directory is sys.path[0]
    import apps

# -- the asyncio servers -----------------------------------------------------


def _run_asyncio(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], loop: str) -> None:
    """Run ``main(stop)`` on ``loop``; SIGTERM and SIGINT set ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, stop.set)
        await main(stop)

    if loop == "uvloop":
        import uvloop

        uvloop.run(runner())
    else:
        asyncio.run(runner())


def tornado_app() -> object:
    import tornado.web

    @tornado.web.stream_request_body
    class Handler(tornado.web.RequestHandler):
        def prepare(self) -> None:
            # Early 413: answered from the headers, the body never read.
            if self.request.method == "POST":
                self.set_status(413)
                self.set_header("Content-Type", "text/plain")
                self.finish(apps.PAGE_BODY)

        def data_received(self, chunk: bytes) -> None:
            pass

        async def get(self) -> None:
            if self.request.path == "/stream":
                self.set_header("Content-Type", "application/octet-stream")
                for _ in range(apps.STREAM_CHUNKS):
                    self.write(b"s" * apps.STREAM_CHUNK)
                    await self.flush()
                return
            if self.request.path == "/slow":
                await asyncio.sleep(0.5)
            self.set_header("Content-Type", "text/plain")
            self.write(apps.SMALL)

    return tornado.web.Application([(r"/.*", Handler)])


def run_tornado(args: argparse.Namespace) -> None:
    if args.pysock:
        from pysock.integrations.tornado import HTTPServer
    else:
        from tornado.httpserver import HTTPServer

    async def main(stop: asyncio.Event) -> None:
        server = HTTPServer(tornado_app())
        server.listen(args.port, "127.0.0.1")
        print("ready", flush=True)
        await stop.wait()
        server.stop()
        await server.close_all_connections()

    _run_asyncio(main, args.loop)


def run_hypercorn(args: argparse.Namespace) -> None:
    from hypercorn.config import Config

    if args.pysock:
        from pysock.integrations.hypercorn import serve
    else:
        from hypercorn.asyncio import serve

    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.graceful_timeout = args.graceful_timeout

    async def main(stop: asyncio.Event) -> None:
        print("ready", flush=True)
        await serve(apps.asgi_app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    _run_asyncio(main, args.loop)


# -- the threaded servers ----------------------------------------------------

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


def _exit_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, _exit)


def _stopped() -> None:
    global _serving
    _serving = False


class Handler(http.server.BaseHTTPRequestHandler):
    """apps.wsgi_app's answers as an ``http.server`` handler."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        # The body is never read: the early-response trap.
        self.send_response(413)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(apps.PAGE_BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(apps.PAGE_BODY)
        self.close_connection = True

    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(apps.STREAM_CHUNK * apps.STREAM_CHUNKS))
            self.end_headers()
            for _ in range(apps.STREAM_CHUNKS):
                self.wfile.write(b"s" * apps.STREAM_CHUNK)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(apps.SMALL)))
        self.end_headers()
        self.wfile.write(apps.SMALL)


def run_socketserver(args: argparse.Namespace) -> None:
    base: type[http.server.HTTPServer] = (
        http.server.HTTPServer if args.serial else http.server.ThreadingHTTPServer
    )
    cls = base
    if args.pysock:
        from pysock.integrations.socketserver import LingeringCloseMixin

        class Server(LingeringCloseMixin, base):  # type: ignore[valid-type,misc]
            pass

        cls = Server
    _exit_on_sigterm()
    server = cls(("127.0.0.1", args.port), Handler)
    try:
        server.serve_forever()
    finally:
        _stopped()
        server.server_close()


def run_cheroot(args: argparse.Namespace) -> None:
    if args.pysock:
        from pysock.integrations.cheroot import Server
    else:
        from cheroot.wsgi import Server
    _exit_on_sigterm()
    server = Server(("127.0.0.1", args.port), apps.wsgi_app)
    try:
        server.start()
    finally:
        _stopped()
        server.stop()


def run_waitress(args: argparse.Namespace) -> None:
    if args.pysock:
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
    kw: dict[str, Any] = {"host": "127.0.0.1", "port": args.port, "_quiet": True}
    if args.max_body is not None:
        kw["max_request_body_size"] = args.max_body
    _exit_on_sigterm()
    try:
        serve(apps.wsgi_app, **kw)
    finally:
        _stopped()


SERVERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "tornado": run_tornado,
    "hypercorn": run_hypercorn,
    "cheroot": run_cheroot,
    "waitress": run_waitress,
    "socketserver": run_socketserver,
}


def _debug() -> None:
    """Each lingering close logged as ``pysock-log: ...``; the servers' own
    warnings and errors to stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pysock-log: %(message)s"))
    log = logging.getLogger("pysock.integrations")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False


def _print_stats() -> None:
    from pysock.integrations import stats

    print(f"pysock-stats: {stats()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pysock", action="store_true", help="with pysock's integration")
    parser.add_argument(
        "--debug", action="store_true", help="log each lingering close; counters at exit"
    )
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="tornado, hypercorn"
    )
    parser.add_argument("--graceful-timeout", type=float, default=5.0, help="hypercorn")
    parser.add_argument("--max-body", type=int, default=None, help="waitress")
    parser.add_argument("--serial", action="store_true", help="socketserver: HTTPServer")
    args = parser.parse_args()
    if args.debug:
        _debug()
    try:
        SERVERS[args.server](args)
    finally:
        if args.debug:
            _print_stats()


if __name__ == "__main__":
    main()
