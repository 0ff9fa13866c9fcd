"""pysock.Reaper's life: close (with and without a timeout, from a
done-callback), the default reaper, interpreter exit and fork."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time

import pytest
from support import (
    WINE_RST_AS_EOF,
    KiB,
    assert_pair_intact,
    payload,
    recv_all,
    reset_after_eof,
    wine_xfail,
)

import pysock
from pysock import Reaper, ReaperClosedError


def test_closed_reaper_refuses(tcp_pair):
    server, client = tcp_pair
    r = Reaper(max_in_flight=4)
    r.close()
    assert r.closed
    for policy in (pysock.Drain(), pysock.Graceful()):
        with pytest.raises(ReaperClosedError, match="closed") as info:
            r.submit(server, policy)
        assert isinstance(info.value, RuntimeError)
    assert_pair_intact(server, client)
    r.close()  # idempotent


def test_context_manager_finishes_in_flight_work(tcp_pair):
    server, client = tcp_pair
    client.sendall(b"x" * 1000)
    client.shutdown(socket.SHUT_WR)
    with Reaper(max_in_flight=8) as r:
        fut = r.submit(server, pysock.Drain(timeout=5))
    assert r.closed
    result = fut.result(0)
    assert (result.reason, result.drained) == ("eof", 1000)


@wine_xfail(WINE_RST_AS_EOF)
def test_close_timeout_lets_closes_finish_by_policy_then_aborts_the_rest(make_pair):
    """close(timeout) lets each close in flight finish by its own policy
    until the deadline, then aborts what is left (its peer sees our FIN,
    then RST); it returns once every result is out, within the bound, and
    the reaper takes no new work."""
    response = payload(64 * KiB)
    finishing = [make_pair() for _ in range(3)]
    stuck = [make_pair() for _ in range(3)]
    r = Reaper()
    futs = []
    for server, _ in finishing + stuck:
        server.sendall(response)
        futs.append(r.submit(server, pysock.Drain(timeout=30)))
    for _, client in finishing + stuck:  # every drain has begun: data, then our FIN
        assert recv_all(client) == (response, "eof")
    for _, client in finishing:
        client.shutdown(socket.SHUT_WR)  # these peers are done: their drains end at EOF
    for fut in futs[:3]:
        assert fut.result(5).reason == "eof"
    t0 = time.monotonic()
    r.close(timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2
    assert all(f.done() for f in futs)  # close returns after every result is out
    for fut in futs[3:]:
        result = fut.result(0)
        assert (result.how, result.reason) == ("abortive", "timeout")
    for _, client in stuck:
        assert reset_after_eof(client)  # the FIN of the drain, then the RST of the abort
    for _, client in finishing:  # no reset for those that finished
        assert client.recv(1) == b""
    stats = r.stats()
    assert (stats.in_flight, stats.done, stats.by_reason) == (0, 6, {"eof": 3, "timeout": 3})
    with pytest.raises(ReaperClosedError):
        r.submit(make_pair()[0], pysock.Drain())


def test_close_without_timeout_waits_for_the_closes_to_end_by_their_policies(make_pair, threads):
    """close() without a timeout waits for every close in flight to end by
    its own policy: at the peer's EOF, or at the policy's own deadline."""
    pairs = [make_pair() for _ in range(4)]
    timed_server, silent = make_pair()  # the drain ends at its timeout
    r = Reaper()
    futs = [r.submit(server, pysock.Drain(timeout=30)) for server, _ in pairs]
    timed = r.submit(timed_server, pysock.Drain(timeout=0.3))
    t0 = time.monotonic()
    for _, client in pairs:
        assert recv_all(client) == (b"", "eof")  # every drain has begun

    def peers_finish() -> None:
        for _, client in pairs:
            client.sendall(b"late request bytes")
            client.shutdown(socket.SHUT_WR)

    closer = threading.Thread(target=r.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # close waits for the drains
    threads.start(peers_finish)
    closer.join(10)
    assert not closer.is_alive()
    assert 0.2 < time.monotonic() - t0 < 3
    assert [(f.result(0).reason, f.result(0).drained) for f in futs] == [("eof", 18)] * 4
    assert timed.result(0).reason == "timeout"
    silent.close()


def test_delivery_thread_is_a_daemon_and_stops_on_close():
    r = Reaper(max_in_flight=4, name="my-reaper")
    thread = r._thread  # the delivery thread; the engine's is native
    assert thread.daemon and thread.is_alive() and thread.name == "my-reaper"
    r.close()
    assert not thread.is_alive()
    assert r._freed  # the native reaper is freed once the last result is out


def test_close_from_a_done_callback_does_not_deadlock(make_pair):
    """close() called in the delivery thread (a done-callback) stops the
    reaper without waiting for that thread; the native reaper is freed when
    the delivery thread ends."""
    r = Reaper()
    (s1, c1), (s2, c2) = make_pair(), make_pair()
    closed = threading.Event()
    first = r.submit(s1, pysock.Drain(timeout=10))
    second = r.submit(s2, pysock.Drain(timeout=10))
    first.add_done_callback(lambda f: (r.close(timeout=0), closed.set()))
    c1.close()
    assert closed.wait(5)
    assert first.result(0).reason == "eof"
    result = second.result(5)  # aborted by close(timeout=0)
    assert (result.how, result.reason) == ("abortive", "timeout")
    r._thread.join(5)
    assert not r._thread.is_alive() and r._freed
    assert recv_all(c2)[1] in ("eof", "reset")  # our FIN, then the abort's RST
    r.close()  # idempotent, from another thread too


def test_default_reaper_is_one_and_works(tcp_pair):
    r = pysock.default_reaper()
    assert r is pysock.default_reaper()
    assert isinstance(r, Reaper) and not r.closed
    server, client = tcp_pair
    fut = r.submit(server, pysock.Drain(timeout=5))
    client.close()
    assert fut.result(5).reason == "eof"


_EXIT_SCRIPT = """
import atexit, socket, sys, time
port = int(sys.argv[1])
def report():  # registered first, so it runs after pysock's own exit handler
    print("results", " ".join(f.result(0).reason for f in futs), flush=True)
atexit.register(report)
import pysock
futs = []
for _ in range(2):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"response" * 1000)
    futs.append(pysock.default_reaper().submit(s, pysock.Drain(timeout=60)))
print("submitted", flush=True)
sys.stdin.readline()  # the peers have seen both FINs
"""


@wine_xfail(WINE_RST_AS_EOF)
def test_interpreter_exit_gives_closes_in_flight_exit_timeout_then_aborts():
    """A process submits two Drain closes to the default reaper and exits:
    one peer closes its side and gets a clean end; the other stays silent
    and gets RST once EXIT_TIMEOUT is over; the process does not hang, exits
    cleanly within that bound and prints nothing else."""
    from pysock._reaper import EXIT_TIMEOUT

    with socket.create_server(("127.0.0.1", 0)) as lst:
        lst.settimeout(10)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _EXIT_SCRIPT, str(lst.getsockname()[1])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            peers = [lst.accept()[0] for _ in range(2)]
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "submitted"
            for p in peers:
                assert recv_all(p) == (b"response" * 1000, "eof")
            quick, silent = peers
            quick.shutdown(socket.SHUT_WR)  # its drain ends at EOF before exit
            time.sleep(0.1)  # (no event tells the child's reaper has seen it)
            t0 = time.monotonic()
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=EXIT_TIMEOUT + 10)
            elapsed = time.monotonic() - t0
            assert proc.returncode == 0, err
            assert out.splitlines() == ["results eof timeout"]
            assert elapsed < EXIT_TIMEOUT + 5
            assert time.monotonic() - started < EXIT_TIMEOUT + 5 + 1  # + interpreter start
            assert reset_after_eof(silent)  # aborted at the exit deadline
            assert quick.recv(1) == b""  # no reset there
            for p in peers:
                p.close()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_the_child_gets_its_own_reaper_and_the_parents_closes_go_on(make_pair):
    """Around fork the native thread is parked.  In the child the inherited
    reaper's pending futures fail with ReaperClosedError, it is closed and
    refuses work, and default_reaper() gives the child a reaper of its own.
    In the parent, with the child alive, the closes go on: the peer reads
    all our data, then our FIN, and its own FIN ends the drain; the child
    kept no copy of another drained socket, so the parent's abort reaches
    its peer; and the parent's reaper still works."""
    r = Reaper()
    server, client = make_pair()
    response = payload(200 * KiB)
    server.sendall(response[: 100 * KiB])
    client.sendall(b"q" * 5000)  # request bytes the server never read
    fut = r.submit(server, pysock.Drain(timeout=30))
    aborted_server, aborted_client = make_pair()
    aborted = r.submit(aborted_server, pysock.Drain(timeout=30))
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: always os._exit
        code = 1
        try:
            os.close(report_r)
            os.close(go_w)
            lines = []
            try:
                fut.result(5)
                lines.append("resolved")
            except ReaperClosedError as exc:
                lines.append(f"failed: {'forked' in str(exc)}")
            lines.append(f"closed: {r.closed}")
            try:
                r.submit(socket.socket(), pysock.Drain())
                lines.append("submit accepted")
            except ReaperClosedError as exc:
                lines.append(f"refused: {'parent' in str(exc)}")
            lines.append(f"exhausted: {r.descriptors_exhausted().result(5)}")
            mine = pysock.default_reaper()
            lst = socket.create_server(("127.0.0.1", 0))
            c = socket.create_connection(lst.getsockname())
            s, _ = lst.accept()
            f = mine.submit(s, pysock.Drain(timeout=5))
            c.close()
            lines.append(f"own: {f.result(5).reason}")
            os.write(report_w, ("\n".join(lines) + "\n").encode())
            os.read(go_r, 1)  # stay alive while the parent's closes go on
            code = 0
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(go_r)
    try:
        report = b""
        while report.count(b"\n") < 5:
            readable, _, _ = select.select([report_r], [], [], 10)
            assert readable, f"the child did not report: {report!r}"
            more = os.read(report_r, 200)
            if not more:
                break
            report += more
        os.close(report_r)
        assert report.decode().splitlines() == [
            "failed: True",
            "closed: True",
            "refused: True",
            "exhausted: 0",
            "own: eof",
        ]
        assert not fut.done()  # the parent's close goes on
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == (response[: 100 * KiB], "eof")  # all our data, then FIN
        result = fut.result(5)
        assert (result.how, result.reason, result.drained) == ("graceful", "eof", 5000)
        # The parent's reaper still works after the fork.
        server2, client2 = make_pair()
        f2 = r.submit(server2, pysock.Drain(timeout=5))
        client2.close()
        assert f2.result(5).reason == "eof"
        # The child is alive and did not keep a copy of the other drained
        # socket: the parent's abort reaches the peer now.
        assert recv_all(aborted_client) == (b"", "eof")
        r.close(timeout=0)
        assert aborted.result(5).reason == "timeout"
        assert reset_after_eof(aborted_client, wait=2)
    finally:
        os.write(go_w, b"x")
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
