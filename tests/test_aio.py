"""pysock.aio under the default event loop, uvloop and (on Windows) both of
asyncio's loops: close and close_transport over real loopback sockets,
checked from the peer's side."""

from __future__ import annotations

import asyncio
import select
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from support import WINE_RST_AS_EOF, KiB, MiB, open_fds, payload, recv_all, wine_xfail

import pysock
from pysock import Reaper, aio
from pysock._errors import NotConnectedError

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

Run = Callable[[Coroutine[Any, Any, Any]], Any]


# "asyncio" is the default loop: the selector loop on POSIX, the proactor
# loop on Windows, where the selector loop is tested too.
LOOPS = ["asyncio", "uvloop"] + (["selector"] if sys.platform == "win32" else [])


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Iterator[Run]:
    factory: Callable[[], asyncio.AbstractEventLoop]
    if request.param == "uvloop":
        if uvloop is None:
            pytest.skip("uvloop not installed")
        factory = uvloop.new_event_loop
    elif request.param == "selector":
        factory = asyncio.SelectorEventLoop
    else:
        factory = asyncio.new_event_loop
    loop = factory()
    if request.param == "asyncio" and sys.platform == "win32":
        # Windows' default, whose transports shut their socket down on abort.
        assert isinstance(loop, asyncio.ProactorEventLoop)
    asyncio.set_event_loop(loop)  # asyncio.Runner is Python >= 3.11

    def go(coro: Coroutine[Any, Any, Any]) -> Any:
        return loop.run_until_complete(asyncio.wait_for(coro, 10))

    try:
        yield go
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _ticks_until(n: int, box: list[int]) -> None:
    while box[0] < n:
        box[0] += 1
        await asyncio.sleep(0)


def test_close_does_not_block_the_loop(run, reaper, tcp_pair):
    server, client = tcp_pair
    client.sendall(b"b" * (64 * KiB))

    async def main() -> pysock.CloseResult:
        task = asyncio.ensure_future(aio.close(server, pysock.Drain(timeout=5), reaper=reaper))
        box = [0]
        await _ticks_until(100, box)  # the loop keeps running while the close waits
        assert not task.done()
        client.close()
        return await task

    result = run(main())
    assert (result.how, result.reason, result.drained) == ("graceful", "eof", 64 * KiB)
    assert server.fileno() == -1


@wine_xfail(WINE_RST_AS_EOF)
def test_close_graceful_and_abortive_at_once(run, make_pair):
    (s1, c1), (s2, c2) = make_pair(), make_pair()

    async def main() -> tuple[pysock.CloseResult, pysock.CloseResult]:
        return await aio.close(s1), await aio.close(s2, pysock.Abortive())

    graceful, abortive = run(main())
    assert (graceful.how, abortive.how) == ("graceful", "abortive")
    assert recv_all(c1) == (b"", "eof")
    assert recv_all(c2) == (b"", "reset")


def test_close_bad_input_raises_and_takes_nothing(run, reaper, tcp_pair, udp_socket):
    server, client = tcp_pair

    async def main() -> None:
        with pytest.raises(TypeError):
            await aio.close(server, "drain", reaper=reaper)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await aio.close(udp_socket, pysock.Drain(), reaper=reaper)

    run(main())
    assert server.fileno() != -1 and udp_socket.fileno() != -1
    server.sendall(b"s")
    assert client.recv(1) == b"s"


def test_cancelled_close_goes_on_and_leaks_nothing(run, make_pair):
    r = Reaper(max_in_flight=8)
    server, client = make_pair()
    before = open_fds()

    async def main() -> None:
        task = asyncio.ensure_future(aio.close(server, pysock.Drain(timeout=5), reaper=r))
        await asyncio.sleep(0)  # it has submitted
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert server.fileno() == -1
    assert recv_all(client) == (b"", "eof")  # the drain goes on
    client.close()
    r.close()  # waits for the drain, which ends at the peer's EOF
    assert r.stats().by_reason == {"eof": 1}
    if before is not None:  # None: the system does not tell (Wine)
        assert open_fds() <= before - 1  # the server's descriptor is gone


class _Server(asyncio.Protocol):
    """Keeps its transport; answers the first data with `response` and
    hands the connection to `on_request`."""

    def __init__(self, response: bytes, on_request: Callable[[asyncio.Transport], Any]) -> None:
        self.response = response
        self.on_request = on_request
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if not self.answered:
            self.answered = True
            assert self.transport is not None
            self.transport.write(self.response)
            self.on_request(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _serve(
    response: bytes, on_request: Callable[[asyncio.Transport], Any]
) -> tuple[asyncio.Server, tuple[str, int], list[_Server]]:
    loop = asyncio.get_running_loop()
    protocols: list[_Server] = []

    def factory() -> _Server:
        p = _Server(response, on_request)
        protocols.append(p)
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2], protocols


def _client(addr: tuple[str, int], body: int, rcvbuf: int | None = None) -> socket.socket:
    c = socket.socket()
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(5)
    c.connect(addr)
    c.sendall(b"x" * body)
    return c


def test_close_transport_delivers_the_whole_response(run, reaper):
    response = payload(4 * MiB)  # more than the socket buffers: the flush is waited for

    async def main() -> tuple[pysock.CloseResult, bytes, str]:
        results: list[asyncio.Future[pysock.CloseResult]] = []

        def on_request(t: asyncio.Transport) -> None:
            results.append(
                asyncio.ensure_future(
                    aio.close_transport(t, pysock.Drain(timeout=10), reaper=reaper)
                )
            )

        server, addr, protocols = await _serve(response, on_request)
        async with server:
            loop = asyncio.get_running_loop()
            c = await loop.run_in_executor(None, _client, addr, 256 * KiB, 64 * KiB)
            data, end = await loop.run_in_executor(None, recv_all, c)
            c.close()
            result = await results[0]
            assert await protocols[0].lost is None  # connection_lost(None): an abort
            return result, data, end

    result, data, end = run(main())
    assert end == "eof" and data == response
    assert (result.how, result.reason, result.peer_eof) == ("graceful", "eof", True)


def test_taking_the_socket_sends_nothing_to_the_peer(run):
    """After the takeover (dup, transport.abort(), one loop iteration) the
    transport has closed its descriptor, yet the peer sees neither FIN nor
    RST and the connection works both ways."""

    async def main() -> None:
        taken: list[socket.socket] = []

        async def take(t: asyncio.Transport) -> None:
            sock = aio._take(t, t.get_extra_info("socket"))
            await asyncio.sleep(0)
            taken.append(sock)

        started: asyncio.Future[asyncio.Task[None]] = asyncio.get_running_loop().create_future()
        server, addr, protocols = await _serve(
            b"hello", lambda t: started.set_result(asyncio.ensure_future(take(t)))
        )
        async with server:
            loop = asyncio.get_running_loop()
            c = await loop.run_in_executor(None, _client, addr, 10)
            await (await started)
            assert await protocols[0].lost is None
            sock = taken[0]
            try:
                assert await loop.run_in_executor(None, c.recv, 5) == b"hello"
                # No FIN and no RST reached the peer:
                readable, _, _ = select.select([c], [], [], 0.2)
                assert not readable
                c.sendall(b"ping")
                sock.settimeout(5)
                assert await loop.run_in_executor(None, sock.recv, 14) == b"ping"
                sock.sendall(b"pong")
                assert await loop.run_in_executor(None, c.recv, 4) == b"pong"
            finally:
                sock.close()
                c.close()

    run(main())


def test_cancelled_close_transport_leaks_nothing(run):
    r = Reaper(max_in_flight=8)
    response = payload(8 * MiB)  # the client does not read: the flush waits
    before = open_fds()

    async def main() -> socket.socket:
        tasks: list[asyncio.Task[pysock.CloseResult]] = []
        started = asyncio.get_running_loop().create_future()

        def on_request(t: asyncio.Transport) -> None:
            tasks.append(
                asyncio.ensure_future(aio.close_transport(t, pysock.Drain(timeout=10), reaper=r))
            )
            started.set_result(None)

        server, addr, protocols = await _serve(response, on_request)
        async with server:
            loop = asyncio.get_running_loop()
            c = await loop.run_in_executor(None, _client, addr, 10, 64 * KiB)
            await started
            box = [0]
            await _ticks_until(20, box)
            assert not tasks[0].done()  # still flushing
            tasks[0].cancel()
            with pytest.raises(asyncio.CancelledError):
                await tasks[0]
            await protocols[0].lost
            return c

    c = run(main())
    data, end = recv_all(c, limit=16 * MiB)  # what was sent, then the drain's FIN
    assert end == "eof" and 0 < len(data) < len(response)
    c.close()
    r.close()
    assert r.stats().by_reason == {"eof": 1}
    if before is not None:  # None: the system does not tell (Wine)
        assert open_fds() <= before


def test_close_transport_on_a_closed_transport_raises(run, reaper):
    async def main() -> None:
        got: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()
        server, addr, _ = await _serve(b"", got.set_result)
        async with server:
            loop = asyncio.get_running_loop()
            c = await loop.run_in_executor(None, _client, addr, 1)
            t = await got
            with pytest.raises(TypeError):
                await aio.close_transport(t, "drain", reaper=reaper)  # type: ignore[arg-type]
            t.close()
            with pytest.raises(NotConnectedError):
                await aio.close_transport(t, reaper=reaper)
            c.close()

    run(main())


@wine_xfail(WINE_RST_AS_EOF)
def test_close_transport_abortive_resets(run, reaper):
    async def main() -> tuple[pysock.CloseResult, socket.socket]:
        got: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()
        server, addr, _ = await _serve(b"", got.set_result)
        async with server:
            loop = asyncio.get_running_loop()
            c = await loop.run_in_executor(None, _client, addr, 1)
            t = await got
            return await aio.close_transport(t, pysock.Abortive(), reaper=reaper), c

    result, c = run(main())
    assert result.how == "abortive"
    assert recv_all(c) == (b"", "reset")
    c.close()


def test_default_reaper_is_used(run, tcp_pair):
    server, client = tcp_pair
    client.shutdown(socket.SHUT_WR)

    async def main() -> pysock.CloseResult:
        return await pysock.aio.close(server, pysock.Drain(timeout=5))

    assert run(main()).reason == "eof"
    assert recv_all(client) == (b"", "eof")


def test_proactor_transport_without_its_internals_is_refused_loudly():
    """close_transport takes a proactor transport's own socket (asyncio
    internals); one without them raises TypeError, never a plain close."""
    import asyncio.proactor_events as proactor_events

    class Odd(proactor_events._ProactorSocketTransport):
        def __del__(self) -> None:  # the base's reads the missing _sock
            pass

    odd = object.__new__(Odd)  # no __init__: no _sock
    with pytest.raises(TypeError, match="cannot take its socket over silently"):
        aio._take(odd, None)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        if uvloop is None:
            pytest.skip("uvloop not installed")
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    if name == "selector":
        return asyncio.SelectorEventLoop
    return asyncio.new_event_loop


@pytest.mark.parametrize("kind", LOOPS)
def test_several_loops_in_several_threads_share_one_reaper(kind, make_pair):
    """Four event loops, each in its own thread, await pysock.aio.close on
    one Reaper at once while a plain thread uses Reaper.submit: every close
    gets its own result in its own loop, and every peer reads its response
    and our FIN."""
    nloops, each = 4, 12
    factory = _loop_factory(kind)
    response = payload(32 * KiB)
    pairs = [make_pair() for _ in range((nloops + 1) * each)]
    for k, (server, client) in enumerate(pairs):
        server.sendall(response)
        client.sendall(b"r" * k)  # request bytes the server never read
    started = threading.Barrier(nloops + 2)
    got: dict[int, list[tuple[int, str, int]]] = {}
    errors: list[BaseException] = []
    with Reaper() as r:

        def run_loop(t: int) -> None:
            loop = factory()

            async def one(k: int) -> tuple[int, str, int]:
                result = await aio.close(pairs[k][0], pysock.Drain(timeout=10), reaper=r)
                assert asyncio.get_running_loop() is loop  # resolved in this loop
                return k, result.reason, result.drained

            async def main() -> list[tuple[int, str, int]]:
                started.wait(5)
                tasks = [asyncio.ensure_future(one(k)) for k in range(t * each, (t + 1) * each)]
                return await asyncio.wait_for(asyncio.gather(*tasks), 10)

            try:
                got[t] = loop.run_until_complete(main())
            except BaseException as exc:
                errors.append(exc)
            finally:
                loop.close()

        def plain() -> None:
            try:
                started.wait(5)
                base = nloops * each
                futs = [
                    r.submit(pairs[k][0], pysock.Drain(timeout=10))
                    for k in range(base, base + each)
                ]
                got[nloops] = [
                    (base + j, f.result(10).reason, f.result(10).drained)
                    for j, f in enumerate(futs)
                ]
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=run_loop, args=(t,)) for t in range(nloops)]
        workers.append(threading.Thread(target=plain))
        for w in workers:
            w.start()
        started.wait(5)
        for _, client in pairs:  # each peer reads everything, then our FIN, then closes
            assert recv_all(client) == (response, "eof")
            client.shutdown(socket.SHUT_WR)
        for w in workers:
            w.join(20)
        assert not errors
    assert sorted(x for v in got.values() for x in v) == [(k, "eof", k) for k in range(len(pairs))]
    assert r.stats().by_reason == {"eof": len(pairs)}


def test_cancelled_await_the_close_goes_on_and_the_peer_gets_data_and_fin(run, make_pair):
    r = Reaper()
    server, client = make_pair()
    response = payload(128 * KiB)
    server.sendall(response)

    async def main() -> None:
        task = asyncio.ensure_future(aio.close(server, pysock.Drain(timeout=10), reaper=r))
        for _ in range(3):
            await asyncio.sleep(0)
        assert server.fileno() == -1  # submitted
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert recv_all(client) == (response, "eof")  # the drain went on: all of it, then FIN
    client.sendall(b"x" * 1000)
    client.shutdown(socket.SHUT_WR)
    r.close()  # the drain ends at the peer's EOF
    assert (r.stats().by_reason, r.stats().in_flight) == ({"eof": 1}, 0)
    assert client.recv(1) == b""  # and no reset
