"""pysock.integrations.gunicorn end to end: gunicorn started by its own
command line with ``-k pysock.integrations.gunicorn.SyncWorker`` /
``ThreadWorker``, against ``-k sync`` / ``-k gthread`` as the control."""

from __future__ import annotations

import sys
import textwrap

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("httpx")
pytest.importorskip("requests")

from integrations.apps import PAGE_BODY
from integrations.harness import (
    ServerProcess,
    free_port,
    keepalive_gets,
    run_cell,
    start_server,
)
from integrations.threaded_support import (
    HERE,
    ROOT,
    SHORT_POLICY,
    NeverReads,
    describe,
    disconnect_mid_upload,
    matrix,
    total_whole,
)

pytestmark = pytest.mark.integration

WORKERS = {
    "sync": ("sync", "pysock.integrations.gunicorn.SyncWorker"),
    "gthread": ("gthread", "pysock.integrations.gunicorn.ThreadWorker"),
}

# Logs each lingering close (debug) and the counters at worker exit, so a
# test can see what the worker did.
CONFIG = textwrap.dedent(
    """
    import logging, sys

    def post_worker_init(worker):
        log = logging.getLogger("pysock.integrations")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("pysock-log: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)

    def worker_exit(server, worker):
        if "pysock.integrations" in sys.modules:
            from pysock.integrations import stats
            print(f"pysock-stats: {stats()}", file=sys.stderr, flush=True)
    """
)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("gunicorn") / "conf.py"
    path.write_text(CONFIG)
    return str(path)


def gunicorn(
    worker: str, config: str, env: dict[str, str] | None = None, *args: str
) -> ServerProcess:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        config,
        "-k",
        worker,
        "-w",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        HERE,
        *args,
        "apps:wsgi_app",
    ]
    if worker.endswith("ThreadWorker") or worker == "gthread":
        argv[-1:-1] = ["--threads", "2"]
    return start_server(argv, port, env, cwd=ROOT)


@pytest.mark.parametrize("kind", list(WORKERS))
def test_early_413_whole_with_the_worker_and_cut_without(
    kind: str, config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plain_worker, our_worker = WORKERS[kind]
    with gunicorn(plain_worker, config_file) as plain:
        plain_cells = matrix(plain.url)
    with gunicorn(our_worker, config_file) as ours:
        our_cells = matrix(ours.url)
    with capsys.disabled():
        print(f"\ngunicorn {kind}: plain {describe(plain_cells)}")
        print(f"gunicorn {kind}: pysock {describe(our_cells)}")
    for name, (whole, total, errors) in our_cells.items():
        assert whole == total, f"{name} with {our_worker}: {whole}/{total}: {errors[:3]}"
    whole, total = total_whole(plain_cells)
    assert whole < total, f"plain -k {plain_worker} lost nothing: {describe(plain_cells)}"


def test_thread_worker_keeps_connections_alive(config_file: str) -> None:
    with gunicorn(WORKERS["gthread"][1], config_file) as server:
        answers = keepalive_gets(server.port, 5)
        assert [status for status, _ in answers] == [200] * 5
        assert all(body == b"ok\n" for _, body in answers)
        stream = keepalive_gets(server.port, 2, "/stream")
        assert all(status == 200 and len(body) == 16 * 1024 * 8 for status, body in stream)


@pytest.mark.parametrize("kind", list(WORKERS))
def test_client_disconnecting_mid_upload_leaves_the_worker_serving(
    kind: str, config_file: str
) -> None:
    with gunicorn(WORKERS[kind][1], config_file) as server:
        disconnect_mid_upload(server.port)
        disconnect_mid_upload(server.port, reset=True)
        whole, total, errors = run_cell("httpx", server.url, 3)
        assert whole == total, errors
        assert keepalive_gets(server.port, 1) == [(200, b"ok\n")]
        assert "Traceback" not in server.output(), server.output()


@pytest.mark.parametrize("kind", list(WORKERS))
def test_client_that_never_reads_is_cut_at_the_deadline(kind: str, config_file: str) -> None:
    with gunicorn(WORKERS[kind][1], config_file, SHORT_POLICY) as server:
        client = NeverReads(server.port)
        try:
            assert client.response_arrived(), "no 413 arrived"
            assert client.ended.wait(20), "the lingering close never ended"
            assert client.end_time is not None
            elapsed = client.end_time - client.started
            # The policy's 2 s deadline, generously bounded.
            assert elapsed < 15, elapsed
            assert isinstance(client.error, (ConnectionResetError, BrokenPipeError))
            # Our data had arrived whole before the reset.
            status, body = client.read_response()
            assert status == 413 and body == PAGE_BODY
            # The worker is free meanwhile and after.
            assert keepalive_gets(server.port, 1) == [(200, b"ok\n")]
        finally:
            client.close()
        assert "pysock-log: gunicorn: abortive/timeout" in server.output(), server.output()


@pytest.mark.parametrize("kind", list(WORKERS))
def test_sigterm_with_a_lingering_close_in_flight_exits_within_the_deadline(
    kind: str, config_file: str
) -> None:
    env = {"PYSOCK_DRAIN_TIMEOUT": "3", "PYSOCK_DRAIN_IDLE": "3"}
    server = gunicorn(WORKERS[kind][1], config_file, env)
    client = None
    try:
        client = NeverReads(server.port)
        status, _body = client.read_until_fin()
        assert status == 413
        assert not client.ended.is_set()
        took = server.stop(timeout=20)
        assert server.proc.returncode == 0, server.output()
        # The drain's 3 s deadline and gunicorn's own stop, generously.
        assert took < 12, took
        out = server.output()
        # The worker waited for the close: it ended by its deadline, not by exit.
        assert "pysock-log: gunicorn: abortive/timeout" in out, out
        assert client.ended.wait(5)
    finally:
        if client is not None:
            client.close()
        server.stop()
