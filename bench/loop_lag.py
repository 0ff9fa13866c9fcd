"""Event-loop lag while 10,000 lingering closes are in flight.

    python -m bench.loop_lag [--quick] [--n N] [--loop asyncio|uvloop]
                             [--path sink|wrap_future|asyncio]

The peers run in a child process (so the descriptors split between two
processes: RLIMIT_NOFILE here is 20,000).  Each peer sends 32 KiB of request
body the server never reads.  The server then closes every connection with
``await pysock.aio.close(sock, Drain(...))`` — submitted 25 per loop
iteration, as a busy server would — and meanwhile a probe callback scheduled
every 1 ms records how late it ran: the loop's lag.  After all are submitted
the peers send 16 KiB more each (the reaper drains it) and close; the run
ends when every close has returned its result.

``--path``: ``sink`` (pysock.aio: the Reaper's delivery thread hands each
loop its results in batches, one call_soon_threadsafe per batch),
``wrap_future`` (Reaper.submit + asyncio.wrap_future per close), ``notify``
(the alternative design, for comparison: the loop itself harvests the C
reaper through ``loop.add_reader(ps_reaper_notify_fd)``, at most 64 per
callback, no delivery thread; only right when one loop is the only
consumer), ``asyncio`` (no reaper: shutdown, loop.add_reader and recv on the
loop itself).

Reports the maximum and the 99th percentile of the lag, over the whole
in-flight period.  Target: max <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pysock
import pysock.aio

from . import ROOT

BODY1 = 32 * 1024
BODY2 = 16 * 1024


def peer_main(port: int, n: int) -> None:
    """The child: n connections; body; wait for 'go'; more body; close."""
    _raise_nofile()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"b" * BODY1)
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.readline()
    for s in socks:
        s.sendall(b"c" * BODY2)
    for s in socks:
        s.close()
    print("closed", flush=True)


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def pure_asyncio_drain(sock: socket.socket, timeout: float) -> str:
    """The no-reaper path: lingering close on the loop itself."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    sock.shutdown(socket.SHUT_WR)
    fd = sock.fileno()
    fut: asyncio.Future[str] = loop.create_future()

    def finish(reason: str) -> None:
        loop.remove_reader(fd)
        timer.cancel()
        if reason != "eof":
            pysock.abort(sock)
        else:
            sock.close()
        fut.set_result(reason)

    def on_read() -> None:
        try:
            while True:
                if not sock.recv(65536):
                    finish("eof")
                    return
        except BlockingIOError:
            return
        except ConnectionResetError:
            finish("reset")

    loop.add_reader(fd, on_read)
    timer = loop.call_later(timeout, finish, "timeout")
    return await fut


class NotifyReaper:
    """--path notify: the C reaper harvested on the loop (bench only)."""

    BATCH = 64

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from pysock._binding import ffi, lib

        self.ffi, self.lib, self.loop = ffi, lib, loop
        err = ffi.new("ps_error *")
        self.r = lib.ps_reaper_new(256, 0, err)
        assert self.r != ffi.NULL
        self.out = ffi.new("ps_completion[]", self.BATCH)
        self.futs: dict[int, asyncio.Future[str]] = {}
        self.token = 0
        self.fd = int(lib.ps_reaper_notify_fd(self.r))
        loop.add_reader(self.fd, self.ready)

    def submit(self, sock: socket.socket, policy: pysock.Drain) -> asyncio.Future[str]:
        ffi, lib = self.ffi, self.lib
        op = ffi.new("ps_op *")
        rc = lib.ps_op_start(op, sock.fileno(), lib.PS_DRAIN, policy.timeout, 0.0, 0)
        assert rc == lib.PS_PENDING
        self.token += 1
        fut = self.loop.create_future()
        self.futs[self.token] = fut
        assert lib.ps_reaper_submit_op(self.r, op, self.token, ffi.addressof(op.res, "err")) == 0
        sock.detach()
        return fut

    def ready(self) -> None:
        from pysock._binding import to_result

        n = self.lib.ps_reaper_harvest(self.r, self.out, self.BATCH)
        pop = self.futs.pop
        for j in range(n):
            c = self.out[j]
            pop(c.token).set_result(to_result(c.res).reason)

    def stats_in_flight(self) -> int:
        return len(self.futs)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        self.lib.ps_reaper_close(self.r, 1.0)
        self.lib.ps_reaper_free(self.r)


async def measure(
    conns: list[socket.socket], peer: subprocess.Popen[str], path: str, batch: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stamps: list[float] = []
    running = True
    period = 0.001

    def probe(expected: float) -> None:
        now = loop.time()
        lags.append(now - expected)
        stamps.append(now)
        if running:
            nxt = now + period
            loop.call_at(nxt, probe, nxt)

    # Every collection (when it ended, its generation, how long it took), so
    # that the lag a garbage collection of this benchmark's own objects (its
    # 10,000 tasks) causes is reported apart from the rest.
    gcs: list[tuple[float, int, float]] = []
    gc_t = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_t[0] = time.perf_counter()
        else:
            gcs.append((loop.time(), info["generation"], time.perf_counter() - gc_t[0]))

    gc.callbacks.append(on_gc)
    first = loop.time() + period
    loop.call_at(first, probe, first)
    await asyncio.sleep(0.05)  # a baseline before any close
    baseline = max(lags) if lags else 0.0
    mark = len(lags)
    reaper = pysock.Reaper(max_in_flight=len(conns) + 100)
    notify = NotifyReaper(loop) if path == "notify" else None
    policy = pysock.Drain(timeout=30, idle=None)

    async def one(sock: socket.socket) -> str:
        if notify is not None:
            return await notify.submit(sock, policy)
        if path == "sink":
            return (await pysock.aio.close(sock, policy, reaper=reaper)).reason
        if path == "wrap_future":
            return (await asyncio.wrap_future(reaper.submit(sock, policy))).reason
        return await pure_asyncio_drain(sock, 30)

    t0 = time.monotonic()
    tasks = []
    for k in range(0, len(conns), batch):
        tasks.extend(asyncio.ensure_future(one(s)) for s in conns[k : k + batch])
        await asyncio.sleep(0)
    submitted = time.monotonic() - t0
    mark2 = len(lags)
    await asyncio.sleep(0.2)  # all in flight, draining the first body
    if notify is not None:
        in_flight = notify.stats_in_flight()
    else:
        in_flight = reaper.stats().in_flight if path != "asyncio" else len(tasks)
    assert peer.stdin is not None
    go_at = time.monotonic()
    peer.stdin.write("go\n")
    peer.stdin.flush()
    reasons = await asyncio.gather(*tasks)
    total = time.monotonic() - t0
    running = False
    await asyncio.sleep(0.01)
    reaper.close(timeout=1)
    if notify is not None:
        notify.close()
    gc.callbacks.remove(on_gc)
    window = sorted(lags[mark:])
    # Probes held up by a collection: one ended between when the probe was
    # due and when it ran.
    gc_ends = sorted(end for end, _, _ in gcs)
    clear = []
    for lag, when in zip(lags[mark:], stamps[mark:], strict=True):
        due = when - lag
        k = bisect.bisect_right(gc_ends, due)
        if not (k < len(gc_ends) and gc_ends[k] <= when):
            clear.append(lag)
    clear.sort()
    gen2 = [dur for end, gen, dur in gcs if gen == 2 and end >= stamps[mark]]
    steady = sorted(lags[mark2:])
    if os.environ.get("LAG_TRACE"):
        t0l = stamps[mark]
        worst = sorted(range(mark, len(lags)), key=lags.__getitem__)[-12:]
        print(
            "phases: submitted",
            round(submitted, 3),
            "go at",
            round(go_at - t0, 3),
            file=sys.stderr,
        )
        for when, gen, dur in gcs:
            if dur > 0.001:
                print(f"  gc t={when - t0l:.3f} gen{gen} {dur * 1000:.2f} ms", file=sys.stderr)
        for i in sorted(worst):
            print(f"  t={stamps[i] - t0l:.3f} lag={lags[i] * 1000:.2f} ms", file=sys.stderr)
    if os.environ.get("LAG_DUMP"):
        with open(os.environ["LAG_DUMP"], "w") as f:
            json.dump({"lags": lags[mark:], "stamps": stamps[mark:], "t0": stamps[mark]}, f)
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    return {
        "path": path,
        "connections": len(conns),
        "in_flight_peak": in_flight,
        "max_lag_ms": round(window[-1] * 1000, 2),
        "max_lag_in_flight_ms": round(steady[-1] * 1000, 2),
        "max_lag_submitting_ms": round(max(lags[mark:mark2], default=0.0) * 1000, 2),
        "p99_lag_ms": round(window[int(len(window) * 0.99)] * 1000, 2),
        "baseline_max_lag_ms": round(baseline * 1000, 2),
        "max_lag_outside_gc_ms": round(clear[-1] * 1000, 2) if clear else None,
        "p99_lag_outside_gc_ms": round(clear[int(len(clear) * 0.99)] * 1000, 2) if clear else None,
        "probes_behind_gc": len(window) - len(clear),
        "gen2_collections": len(gen2),
        "gen2_max_ms": round(max(gen2) * 1000, 2) if gen2 else 0.0,
        "probes": len(window),
        "submit_s": round(submitted, 3),
        "total_s": round(total, 3),
        "results": counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loop_lag", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1,000 connections")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--path", choices=("sink", "wrap_future", "notify", "asyncio"), default="sink"
    )
    parser.add_argument("--batch", type=int, default=25, help="closes submitted per iteration")
    parser.add_argument("--no-gc-freeze", action="store_true")
    parser.add_argument("--peer", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        peer_main(*args.peer)
        return 0
    n = args.n or (1000 if args.quick else 10_000)
    _raise_nofile()
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    port = listener.getsockname()[1]
    conns: list[socket.socket] = []

    def accept_all() -> None:
        for _ in range(n):
            conns.append(listener.accept()[0])

    acceptor = threading.Thread(target=accept_all)
    acceptor.start()
    peer = subprocess.Popen(
        [sys.executable, "-m", "bench.loop_lag", "--peer", str(port), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert peer.stdout is not None
        if peer.stdout.readline().strip() != "ready":
            raise SystemExit("the peer process failed")
        acceptor.join()
        listener.close()
        if args.loop == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        if not args.no_gc_freeze:
            # As servers do after start-up: the 10,000 accepted sockets are
            # not rescanned by every full collection.
            gc.collect()
            gc.freeze()
        try:
            report = loop.run_until_complete(measure(conns, peer, args.path, args.batch))
        finally:
            loop.close()
        report["loop"] = args.loop
        report["batch"] = args.batch
        report["gc_freeze"] = not args.no_gc_freeze
        peer.stdout.readline()
    finally:
        peer.kill()
        peer.wait()
    print(json.dumps(report))
    ok = report["max_lag_ms"] <= 5.0
    print(
        f"{report['connections']} lingering closes ({args.path}, {args.loop}): "
        f"max loop lag {report['max_lag_ms']} ms (in flight {report['max_lag_in_flight_ms']} ms, "
        f"while submitting {report['max_lag_submitting_ms']} ms), p99 {report['p99_lag_ms']} ms; "
        f"not behind a collection: max {report['max_lag_outside_gc_ms']} ms, "
        f"p99 {report['p99_lag_outside_gc_ms']} ms ({report['gen2_collections']} full "
        f"collections, longest {report['gen2_max_ms']} ms) "
        f"-> {'OK' if ok else 'over'} the 5 ms target",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
