"""pysock.Reaper's reclamation: the oldest lingering close is aborted to make
room, under the explicit cap or when descriptors run short (the
RLIMIT_NOFILE ceiling, or the caller's EMFILE report), and logged."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from support import WINE_RST_AS_EOF, recv_all, reset_after_eof, wine_xfail

import pysock
from pysock import Reaper


@wine_xfail(WINE_RST_AS_EOF)
def test_max_in_flight_reclaims_the_oldest(make_pair):
    pairs = [make_pair() for _ in range(3)]
    with Reaper(max_in_flight=2) as r:
        futs = [r.submit(server, pysock.Drain(timeout=5)) for server, _ in pairs]
        oldest = futs[0].result(5)
        assert (oldest.how, oldest.reason) == ("abortive", "reclaimed")
        data, end = recv_all(pairs[0][1])
        assert data == b""
        # If the drain had begun, its FIN arrived before the RST: then the
        # reset follows the EOF.
        assert end == "reset" or reset_after_eof(pairs[0][1])
        assert not futs[1].done() and not futs[2].done()
        assert r.stats().in_flight == 2
        for k in (1, 2):
            client = pairs[k][1]
            assert recv_all(client) == (b"", "eof")  # the FIN of the drain
            client.shutdown(socket.SHUT_WR)
            result = futs[k].result(5)
            assert (result.how, result.reason) == ("graceful", "eof")
        stats = r.stats()
    assert stats.by_reason == {"reclaimed": 1, "eof": 2}
    assert (stats.reclaimed, stats.max_in_flight, stats.ceiling) == (1, 2, 2)


def test_reclaim_picks_the_oldest_across_batches(make_pair):
    pairs = [make_pair() for _ in range(4)]
    with Reaper(max_in_flight=3) as r:
        futs = []
        for server, _ in pairs[:3]:
            futs.append(r.submit(server, pysock.Drain(timeout=5)))
        pairs[1][1].close()  # the middle one finishes: its slot is free again
        assert futs[1].result(5).reason == "eof"
        futs.append(r.submit(pairs[3][0], pysock.Drain(timeout=5)))
        assert r.stats().in_flight == 3
        assert not futs[0].done()  # there was room: nothing reclaimed
        server, _client = make_pair()
        futs.append(r.submit(server, pysock.Drain(timeout=5)))
        assert futs[0].result(5).reason == "reclaimed"  # the oldest, not the newest
        assert not futs[2].done() and not futs[3].done()
        r.close(timeout=0)


def test_an_explicit_cap_grows_no_further(make_pair):
    pairs = [make_pair() for _ in range(12)]
    with Reaper(max_in_flight=10) as r:
        futs = [r.submit(server, pysock.Drain(timeout=10)) for server, _ in pairs]
        assert [f.result(5).reason for f in futs[:2]] == ["reclaimed"] * 2
        stats = r.stats()
        assert (stats.in_flight, stats.reclaimed, stats.max_in_flight) == (10, 2, 10)
        r.close(timeout=0)


@contextlib.contextmanager
def _soft_nofile(at_least: int) -> Iterator[int]:
    """The soft RLIMIT_NOFILE raised to at least ``at_least`` for the
    block (skipped if the hard limit is lower), restored after."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= at_least:
        yield soft
        return
    if hard != resource.RLIM_INFINITY and hard < at_least:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {at_least}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield at_least
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _pairs(n: int) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """n connected loopback pairs (server end blocking, client with a
    timeout), all closed at the end."""
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        with socket.create_server(("127.0.0.1", 0), backlog=min(n, 4096)) as lst:
            lst.settimeout(5)
            for _ in range(n):
                client = socket.create_connection(lst.getsockname(), timeout=5)
                server, _ = lst.accept()
                server.setblocking(True)
                pairs.append((server, client))
        yield pairs
    finally:
        for server, client in pairs:
            server.close()
            client.close()


def test_a_burst_of_3000_drains_is_not_reclaimed():
    """The old default (a fixed 1,024) reclaimed 1,976 of these; now the
    engine grows and none is reclaimed while descriptors are to spare."""
    n = 3000
    with _soft_nofile(8192), contextlib.contextmanager(_pairs)(n) as pairs:
        for _, client in pairs:
            client.sendall(b"b" * 1000)  # part of a body, never read by the server
        with Reaper() as r:
            assert r.max_in_flight is None
            futs = [r.submit(server, pysock.Drain(timeout=20)) for server, _ in pairs]
            stats = r.stats()
            assert stats.in_flight == n
            assert stats.ceiling is not None and stats.ceiling >= n
            # Every drain has begun (its FIN reached the peer), none is over.
            for _, client in pairs:
                assert recv_all(client) == (b"", "eof")
            assert not any(f.done() for f in futs)
            assert r.stats().reclaimed == 0
            for _, client in pairs:  # the rest of the body, sent to the grown engine
                client.sendall(b"b" * 1000)
                client.shutdown(socket.SHUT_WR)
            results = [f.result(20) for f in futs]
            stats = r.stats()
        assert {(x.how, x.reason, x.drained) for x in results} == {("graceful", "eof", 2000)}
        assert (stats.done, stats.reclaimed, stats.by_reason) == (n, 0, {"eof": n})
        for _, client in pairs:  # FIN, then no RST: a reset would raise here
            assert client.recv(1) == b""


def test_the_ceiling_follows_rlimit_nofile():
    resource = pytest.importorskip("resource")
    from pysock._reaper import descriptor_ceiling

    with _soft_nofile(4096):
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert descriptor_ceiling() == soft - max(64, soft // 8)
        with Reaper() as r:
            assert r.stats().ceiling == descriptor_ceiling()
        with Reaper(max_in_flight=10) as r:
            assert r.stats().ceiling == 10  # the smaller of the two


def test_reclaims_when_descriptors_run_short(monkeypatch, make_pair):
    """The ceiling is the soft RLIMIT_NOFILE minus the reserve: with a
    reserve that leaves room for 3, the fourth drain reclaims the oldest."""
    resource = pytest.importorskip("resource")
    import pysock._reaper as reaper_module

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no soft RLIMIT_NOFILE")
    monkeypatch.setattr(reaper_module, "RESERVE_MIN", soft - 3)
    pairs = [make_pair() for _ in range(4)]
    with Reaper() as r:
        futs = [r.submit(server, pysock.Drain(timeout=5)) for server, _ in pairs]
        oldest = futs[0].result(5)
        assert (oldest.how, oldest.reason) == ("abortive", "reclaimed")
        data, end = recv_all(pairs[0][1])
        assert data == b"" and (end == "reset" or reset_after_eof(pairs[0][1]))
        stats = r.stats()
        assert (stats.in_flight, stats.reclaimed, stats.ceiling) == (3, 1, 3)
        assert not any(f.done() for f in futs[1:])
        for _, client in pairs[1:]:
            client.close()
        assert [f.result(5).reason for f in futs[1:]] == ["eof"] * 3


def test_emfile_reported_by_the_caller_reclaims_the_oldest(tcp_pair):
    """A real EMFILE: a connection waits in the backlog, the soft limit
    leaves no descriptor free, accept() fails; descriptors_exhausted()
    reclaims the oldest drain and accept() succeeds."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with socket.create_server(("127.0.0.1", 0)) as lst, Reaper() as r:
        conns = [socket.create_connection(lst.getsockname(), timeout=5) for _ in range(4)]
        try:
            drained = []
            for c in conns[:3]:
                s, _ = lst.accept()
                drained.append((s, c))
            waiting = conns[3]  # connected, not accepted yet
            futs = [r.submit(s, pysock.Drain(timeout=10)) for s, _ in drained]
            for _, c in drained:  # every drain has begun
                assert recv_all(c) == (b"", "eof")
            free = os.dup(0)  # the lowest free descriptor
            os.close(free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
            try:
                with pytest.raises(OSError) as info:
                    lst.accept()
                assert info.value.errno == errno.EMFILE
                assert r.descriptors_exhausted(1).result(5) == 1
                accepted, _ = lst.accept()  # the reclaimed drain's descriptor
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            accepted.close()
            assert futs[0].result(0).reason == "reclaimed"
            assert reset_after_eof(drained[0][1])
            assert not futs[1].done() and not futs[2].done()
            stats = r.stats()
            assert (stats.in_flight, stats.reclaimed) == (2, 1)
            assert stats.by_reason == {"reclaimed": 1}
            for _, c in drained[1:]:
                c.close()
            assert [f.result(5).reason for f in futs[1:]] == ["eof", "eof"]
            del waiting
        finally:
            for c in conns:
                c.close()


def test_descriptors_exhausted_takes_an_eighth_of_those_in_flight(make_pair):
    pairs = [make_pair() for _ in range(17)]
    with Reaper() as r:
        futs = [r.submit(server, pysock.Drain(timeout=10)) for server, _ in pairs]
        assert r.descriptors_exhausted().result(5) == 2  # 17 // 8
        assert [f.result(5).reason for f in futs[:2]] == ["reclaimed"] * 2
        assert not any(f.done() for f in futs[2:])
        assert r.descriptors_exhausted(100).result(5) == 15  # at most those in flight
        assert r.stats().reclaimed == 17
        assert r.stats().in_flight == 0


def test_bad_descriptors_exhausted_arguments(reaper):
    with pytest.raises(ValueError):
        reaper.descriptors_exhausted(0)
    with pytest.raises(TypeError):
        reaper.descriptors_exhausted(2.0)  # type: ignore[arg-type]
    assert reaper.descriptors_exhausted().result(5) == 0  # nothing in flight


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[tuple[float, str]] = []
        self.arrived = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((time.monotonic(), record.getMessage()))
        self.arrived.release()


def test_reclaims_are_logged_at_most_once_a_second_with_the_count(make_pair, caplog):
    log = logging.getLogger("pysock")
    seen = _Warnings()
    log.addHandler(seen)
    caplog.set_level(logging.WARNING, logger="pysock")
    pairs = [make_pair() for _ in range(4)]
    try:
        with Reaper() as r:
            futs = [r.submit(server, pysock.Drain(timeout=10)) for server, _ in pairs]
            t0 = time.monotonic()
            assert r.descriptors_exhausted(2).result(5) == 2  # two in quick succession
            assert seen.arrived.acquire(timeout=5)
            assert r.descriptors_exhausted(1).result(5) == 1  # within the second
            quick = time.monotonic() - t0 < 0.9
            if quick:  # (a slower machine may have passed the second: then not checked)
                assert len(seen.messages) == 1
            assert seen.arrived.acquire(timeout=5)  # the rest, once the second is over
            assert r.stats().reclaimed == 3
            for _, client in pairs[3:]:
                client.close()
            assert futs[3].result(5).reason == "eof"
    finally:
        log.removeHandler(seen)
    (t1, first), (t2, second) = seen.messages
    assert "reclaimed 2 lingering closes" in first and "EMFILE" in first
    assert "reclaimed 1 lingering close " in second
    assert t2 - t1 >= 0.9
    records = [r for r in caplog.records if r.name == "pysock" and "reclaimed" in r.message]
    assert len(records) == 2 and all(r.levelno == logging.WARNING for r in records)
