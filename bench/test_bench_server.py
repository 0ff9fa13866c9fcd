"""4. Server shape: an early 413 without reading the request body, under
concurrent uploading clients (another process): plain close (the control),
gunicorn's close_graceful, a Python recv-loop and pysock Drain."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import common
from bench.cases import server

CLIENTS = 8
SECONDS = 1.0
BODY = 4 * common.MiB


@pytest.mark.parametrize("response", server.RESPONSE_SIZES)
@pytest.mark.parametrize("closer", list(server.closers()))
def test_server(
    benchmark: BenchmarkFixture, clients: common.Worker, closer: str, response: int
) -> None:
    if server.closers()[closer] is None:
        pytest.skip(f"{closer}: gunicorn is not installed")
    sample = benchmark.pedantic(
        server.run_one,
        args=(clients, closer, CLIENTS, SECONDS, BODY, response),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        requests=sample.requests,
        req_per_s=sample.rps,
        complete=sample.complete,
        truncated=sample.truncated,
        resets=sample.resets,
        clean=sample.clean,
        server_cpu_us_per_req=sample.cpu_per_request * 1e6,
    )
    assert sample.requests > 0
    assert sample.complete + sample.truncated == sample.requests
    if closer == server.PYSOCK:
        assert sample.truncated == 0  # the cure: every response whole
        assert sample.resets == 0
        assert sample.clean == sample.requests
    if closer == server.CONTROL and response == max(server.RESPONSE_SIZES):
        # the control: the RST with the upload unread cuts the 256 KiB response
        assert sample.truncated > 0
