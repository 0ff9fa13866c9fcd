"""2. Per-call cost: one batch of closes per round, connection setup untimed."""

from __future__ import annotations

import socket
import statistics
import time

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pysock import _bench

BATCH = 200


@pytest.mark.parametrize("contender", _bench.PERCALL_CONTENDERS)
def test_close_per_call(
    benchmark: BenchmarkFixture, c_floor: _bench.CFloor | None, contender: str
) -> None:
    prepare = _bench.percall_preparers(c_floor).get(contender)
    if prepare is None:
        pytest.skip("the C floor was not built (no source checkout or no cc)")
    opened: list[socket.socket] = []
    cpu: list[float] = []

    def setup() -> tuple[tuple[_bench.Thunk], dict[str, object]]:
        _bench.close_all(opened)  # the previous round's sockets, untimed
        opened.clear()
        servers, peer_ends = _bench.make_pairs(BATCH)
        opened.extend(servers + peer_ends)
        return (prepare(servers),), {}

    def closes(run: _bench.Thunk) -> None:
        c0 = time.process_time()
        run()
        cpu.append(time.process_time() - c0)

    try:
        benchmark.pedantic(closes, setup=setup, rounds=20, iterations=1)
    finally:
        _bench.close_all(opened)
    benchmark.extra_info["calls_per_round"] = BATCH
    benchmark.extra_info["cpu_us_per_call"] = statistics.median(cpu) / BATCH * 1e6
