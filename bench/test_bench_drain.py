"""1. Drain: receiver CPU per GiB discarded, from a sender in another process."""

from __future__ import annotations

import statistics

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pysock import _bench

NBYTES = 64 * _bench.MiB


@pytest.mark.parametrize("contender", _bench.DRAIN_CONTENDERS)
def test_drain(
    benchmark: BenchmarkFixture,
    sender: _bench.Worker,
    c_floor: _bench.CFloor | None,
    contender: str,
) -> None:
    fns = _bench.drain_fns(c_floor)
    if contender not in fns:
        pytest.skip("the C floor was not built (no source checkout or no cc)")
    samples: list[_bench.DrainSample] = []

    def once() -> None:
        samples.append(_bench.drain_transfer(sender, contender, fns[contender], NBYTES))

    benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
    measured = samples[1:]  # the warm-up round is not counted
    benchmark.extra_info["bytes_per_round"] = NBYTES
    benchmark.extra_info["cpu_s_per_gib"] = statistics.median(s.cpu_per_gib for s in measured)
    benchmark.extra_info["sender_cpu_s_per_gib"] = statistics.median(
        s.sender_cpu * _bench.GiB / s.nbytes for s in measured
    )
    if measured[0].calls >= 0:
        benchmark.extra_info["recv_calls_per_mib"] = statistics.median(
            s.calls * _bench.MiB / s.nbytes for s in measured
        )
    assert all(s.nbytes == NBYTES for s in samples)
