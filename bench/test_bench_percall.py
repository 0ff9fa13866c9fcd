"""2. Per-call cost: one batch of closes per round, connection setup untimed."""

from __future__ import annotations

import socket
import statistics
import time

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import common
from bench.cases import percall

BATCH = 200


@pytest.mark.parametrize("contender", percall.CONTENDERS)
def test_close_per_call(
    benchmark: BenchmarkFixture, c_floor: common.CFloor | None, contender: str
) -> None:
    prepare = percall.preparers(c_floor).get(contender)
    if prepare is None:
        pytest.skip("the C floor was not built (no source checkout or no cc)")
    opened: list[socket.socket] = []
    current: list[socket.socket] = []  # this round's accepted ends
    cpu: list[float] = []
    left_open: list[int] = []

    def setup() -> tuple[tuple[percall.Thunk], dict[str, object]]:
        common.close_all(opened)  # the previous round's sockets, untimed
        opened.clear()
        servers, peer_ends = percall.make_pairs(BATCH)
        opened.extend(servers + peer_ends)
        current[:] = servers
        return (prepare(servers),), {}

    def closes(run: percall.Thunk) -> None:
        c0 = time.process_time()
        run()
        cpu.append(time.process_time() - c0)
        # every accepted end was closed by the contender (or detached for C)
        left_open.append(sum(s.fileno() != -1 for s in current))

    try:
        benchmark.pedantic(closes, setup=setup, rounds=20, iterations=1)
    finally:
        common.close_all(opened)
    benchmark.extra_info["calls_per_round"] = BATCH
    benchmark.extra_info["cpu_us_per_call"] = statistics.median(cpu) / BATCH * 1e6
    assert left_open == [0] * 20
