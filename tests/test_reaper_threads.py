"""pysock.Reaper's threads: the delivery thread runs the done-callbacks,
both threads run below the caller's priority, and many submitting threads
at once (with reclaims among them) each get exactly one result."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

import pytest
from support import recv_all

import pysock
from pysock import Reaper


def test_done_callbacks_run_in_the_delivery_thread_and_a_failing_one_does_not_stop_it(
    reaper, make_pair
):
    seen: list[tuple[str, str]] = []
    called = threading.Event()
    (s1, c1), (s2, c2) = make_pair(), make_pair()
    f1 = reaper.submit(s1, pysock.Drain(timeout=5))
    f1.add_done_callback(lambda f: 1 / 0)
    c1.close()
    with contextlib.suppress(Exception):
        f1.result(5)
    f2 = reaper.submit(s2, pysock.Drain(timeout=5))
    f2.add_done_callback(
        lambda f: (seen.append((f.result().reason, threading.current_thread().name)), called.set())
    )
    c2.close()
    assert f2.result(5).reason == "eof"
    assert called.wait(5)
    assert seen == [("eof", reaper._thread.name)]


def _nice_of_threads() -> dict[int, int]:
    """Each thread of this process: its nice value (/proc, Linux)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError):
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = int(fields[16])  # stat field 19: nice
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_reapers_threads_run_below_the_callers_priority(tcp_pair):
    server, client = tcp_pair
    base = os.getpriority(os.PRIO_PROCESS, 0)
    before = set(_nice_of_threads())
    nice_in_callback: list[int] = []
    called = threading.Event()
    r = Reaper()
    try:
        fut = r.submit(server, pysock.Drain(timeout=5))
        fut.add_done_callback(
            lambda f: (nice_in_callback.append(os.getpriority(os.PRIO_PROCESS, 0)), called.set())
        )
        client.close()
        assert fut.result(5).reason == "eof"  # the native thread has run its loop
        assert called.wait(5)
        new = {tid: nice for tid, nice in _nice_of_threads().items() if tid not in before}
        background = min(19, base + 10)
        assert sorted(new.values()) == [background, background]  # native + delivery
        assert nice_in_callback == [background]  # the callback ran in the delivery thread
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the caller's own is untouched
    finally:
        r.close()


def test_many_threads_submit_at_once(make_pair):
    nthreads, each = 8, 40
    pairs = [make_pair() for _ in range(nthreads * each)]
    for k, (_, client) in enumerate(pairs):
        client.sendall(b"q" * (k % 500))
        client.shutdown(socket.SHUT_WR)
    barrier = threading.Barrier(nthreads)
    futs: list = [None] * len(pairs)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait(5)
            for k in range(t * each, (t + 1) * each):
                futs[k] = r.submit(pairs[k][0], pysock.Drain(timeout=5))
        except BaseException as exc:
            errors.append(exc)

    with Reaper(max_in_flight=1024) as r:
        workers = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(10)
        assert not errors
        for k, fut in enumerate(futs):
            result = fut.result(5)
            assert (result.how, result.reason, result.drained) == ("graceful", "eof", k % 500)
    assert r.stats().done == len(pairs)
    for _, client in pairs:
        assert recv_all(client) == (b"", "eof")


def test_many_submitters_and_reclaims_at_once(make_pair):
    """A bounded stress: 8 threads submit 50 closes each (Drain, Linger,
    Graceful, Abortive mixed) to one reaper while another thread reports
    descriptor exhaustion; every close gets exactly one result, the counts
    add up, and every peer sees FIN (or RST for Abortive and reclaimed)."""
    nthreads, each = 8, 50
    pairs = [make_pair() for _ in range(nthreads * each)]
    policies = [pysock.Drain(timeout=10), pysock.Linger(10), pysock.Graceful(), pysock.Abortive()]
    for _, client in pairs:
        client.shutdown(socket.SHUT_WR)  # each peer is done sending
    barrier = threading.Barrier(nthreads + 1)
    futs: list = [None] * len(pairs)
    errors: list[BaseException] = []
    reclaims: list[int] = []

    def work(t: int) -> None:
        try:
            barrier.wait(5)
            for k in range(t * each, (t + 1) * each):
                futs[k] = r.submit(pairs[k][0], policies[k % 4])
        except BaseException as exc:
            errors.append(exc)

    def exhaust() -> None:
        try:
            barrier.wait(5)
            for _ in range(5):
                reclaims.append(r.descriptors_exhausted(2).result(5))
        except BaseException as exc:
            errors.append(exc)

    with Reaper() as r:
        workers = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
        workers.append(threading.Thread(target=exhaust))
        for w in workers:
            w.start()
        for w in workers:
            w.join(20)
        assert not errors
        results = [f.result(10) for f in futs]
    stats = r.stats()
    n = len(pairs)
    assert (stats.in_flight, stats.done, stats.failed) == (0, n, 0)
    assert stats.reclaimed == sum(reclaims) == sum(x.reason == "reclaimed" for x in results)
    assert sum(stats.by_reason.values()) == n
    for k, (result, (_, client)) in enumerate(zip(results, pairs, strict=True)):
        if result.reason == "reclaimed" or k % 4 == 3:
            assert result.how == "abortive"
        else:
            assert result.how == "graceful"
            assert recv_all(client) == (b"", "eof")
