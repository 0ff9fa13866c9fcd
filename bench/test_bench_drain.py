"""1. Drain: receiver CPU per GiB discarded, from a sender in another process."""

from __future__ import annotations

import statistics

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import common
from bench.cases import drain

NBYTES = 64 * common.MiB


@pytest.mark.parametrize("contender", drain.CONTENDERS)
def test_drain(
    benchmark: BenchmarkFixture,
    sender: common.Worker,
    c_floor: common.CFloor | None,
    contender: str,
) -> None:
    fns = drain.drain_fns(c_floor)
    if contender not in fns:
        pytest.skip("the C floor was not built (no source checkout or no cc)")
    samples: list[drain.DrainSample] = []

    def once() -> None:
        samples.append(drain.transfer(sender, contender, fns[contender], NBYTES))

    benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
    measured = samples[1:]  # the warm-up round is not counted
    benchmark.extra_info["bytes_per_round"] = NBYTES
    benchmark.extra_info["cpu_s_per_gib"] = statistics.median(s.cpu_per_gib for s in measured)
    benchmark.extra_info["sender_cpu_s_per_gib"] = statistics.median(
        s.sender_cpu * common.GiB / s.nbytes for s in measured
    )
    if measured[0].calls >= 0:
        benchmark.extra_info["recv_calls_per_mib"] = statistics.median(
            s.calls * common.MiB / s.nbytes for s in measured
        )
    assert all(s.nbytes == NBYTES for s in samples)
