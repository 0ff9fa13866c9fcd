"""3. Many connections closed with Drain(timeout=2) while the peers (another
process) close within 0-500 ms: close_many, a thread pool, asyncio tasks and
the minimal C program (Linux)."""

from __future__ import annotations

import socket

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import common
from bench.cases import many


@pytest.mark.parametrize("n", [1000])
@pytest.mark.parametrize("contender", many.CONTENDERS)
def test_many(
    benchmark: BenchmarkFixture,
    peers: common.Worker,
    c_floor: common.CFloor | None,
    contender: str,
    n: int,
) -> None:
    closer = many.closers(c_floor).get(contender)
    if closer is None:
        pytest.skip("the C floor's df_linger_many was not built (Linux, source checkout, cc)")
    samples: list[many.ManySample] = []

    def setup() -> tuple[tuple[list[socket.socket]], dict[str, object]]:
        return (many.connect(peers, n),), {}

    def close(socks: list[socket.socket]) -> None:
        samples.append(many.close(peers, contender, closer, socks, seed=len(samples)))

    benchmark.pedantic(close, setup=setup, rounds=3, iterations=1)
    last = samples[-1]
    benchmark.extra_info.update(
        n=n,
        cpu_s=[s.cpu for s in samples],
        wall_s=[s.wall for s in samples],
        slowest_peer_s=[s.slowest_peer for s in samples],
        outcomes=last.outcomes,
    )
    # every connection was closed and counted; the peers all closed well
    # within the 2 s deadline, so (generously) most reached EOF
    assert all(sum(s.outcomes.values()) == n for s in samples)
    assert all(s.outcomes.get("eof", 0) >= n // 2 for s in samples)
