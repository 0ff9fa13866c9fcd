"""4. Server shape: an early 413 without reading the request body, under
concurrent uploading clients (another process)."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pysock import _bench

CLIENTS = 8
SECONDS = 1.0
BODY = 4 * _bench.MiB


@pytest.mark.parametrize("response", _bench.RESPONSE_SIZES)
@pytest.mark.parametrize("closer", list(_bench.SERVER_CLOSERS))
def test_server(
    benchmark: BenchmarkFixture, clients: _bench.Worker, closer: str, response: int
) -> None:
    sample = benchmark.pedantic(
        _bench.server_run,
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
    )
    assert sample.requests > 0
