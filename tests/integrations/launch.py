"""Start a server that its users start from Python, as they would, serving
the test apps (apps.py) on 127.0.0.1:

    python tests/integrations/launch.py tornado --port N [--pysock] [--loop asyncio|uvloop]
    python tests/integrations/launch.py hypercorn --port N [--pysock] [--loop asyncio|uvloop]

``--pysock`` uses the pysock integration, else the server's own class or
function.  SIGTERM (and SIGINT) start the server's graceful shutdown; the
process exits when it is over.  Prints ``ready`` once listening.

Other servers: add a function to SERVERS (it gets the parsed arguments and
runs the server until it has shut down).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps


def _run(main: Callable[[asyncio.Event], object], loop: str) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, stop.set)
        await main(stop)  # type: ignore[misc]

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

    _run(main, args.loop)


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

    _run(main, args.loop)


SERVERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "tornado": run_tornado,
    "hypercorn": run_hypercorn,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pysock", action="store_true", help="the pysock integration")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--graceful-timeout", type=float, default=5.0)
    parser.add_argument("--debug", action="store_true", help="pysock.integrations at DEBUG")
    args = parser.parse_args()
    if args.debug:
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
        logging.getLogger("pysock.integrations").setLevel(logging.DEBUG)
    SERVERS[args.server](args)


if __name__ == "__main__":
    main()
