"""3. Many connections closed with Drain(timeout=2) while the peers (another
process) close within 0-500 ms."""

from __future__ import annotations

import socket

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pysock import _bench


@pytest.mark.parametrize("n", [1000])
@pytest.mark.parametrize("contender", list(_bench.MANY_CONTENDERS))
def test_many(benchmark: BenchmarkFixture, peers: _bench.Worker, contender: str, n: int) -> None:
    samples: list[_bench.ManySample] = []

    def setup() -> tuple[tuple[list[socket.socket]], dict[str, object]]:
        return (_bench.many_connect(peers, n),), {}

    def close(socks: list[socket.socket]) -> None:
        samples.append(_bench.many_close(peers, contender, socks, seed=len(samples)))

    benchmark.pedantic(close, setup=setup, rounds=3, iterations=1)
    last = samples[-1]
    benchmark.extra_info.update(
        n=n,
        cpu_s=[s.cpu for s in samples],
        wall_s=[s.wall for s in samples],
        slowest_peer_s=[s.slowest_peer for s in samples],
        outcomes=last.outcomes,
    )
    assert all(sum(s.outcomes.values()) == n for s in samples)
