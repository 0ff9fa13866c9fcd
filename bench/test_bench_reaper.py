"""Reaper throughput: the many case's peers closed through Reaper.submit (submit
N, wait for every future) and through close_many, the same N."""

from __future__ import annotations

import socket

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import pysock
from bench import common
from bench.cases import many, reaper


@pytest.mark.parametrize("n", [1000])
@pytest.mark.parametrize("contender", reaper.CONTENDERS)
def test_reaper_throughput(
    benchmark: BenchmarkFixture, peers: common.Worker, contender: str, n: int
) -> None:
    samples: list[many.ManySample] = []
    with pysock.Reaper() as engine:
        closer = (
            reaper.reaper_closer(engine)
            if contender == reaper.SUBMIT
            else many.closers(None)["pysock.close_many"]
        )

        def setup() -> tuple[tuple[list[socket.socket]], dict[str, object]]:
            return (many.connect(peers, n),), {}

        def close(socks: list[socket.socket]) -> None:
            samples.append(many.close(peers, contender, closer, socks, seed=len(samples)))

        benchmark.pedantic(close, setup=setup, rounds=3, iterations=1)
        stats = engine.stats()
    benchmark.extra_info.update(
        n=n,
        cpu_s=[s.cpu for s in samples],
        closes_per_cpu_s=[n / s.cpu for s in samples if s.cpu > 0],
        outcomes=samples[-1].outcomes,
    )
    assert all(sum(s.outcomes.values()) == n for s in samples)
    assert all(s.outcomes.get("eof", 0) >= n // 2 for s in samples)
    if contender == reaper.SUBMIT:
        assert stats.done == 3 * n  # every close went through this Reaper
    else:
        assert stats.done == 0
