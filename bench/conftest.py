"""The pytest-benchmark suite: the same cases as ``python -m bench`` (the
logic lives in bench/cases/, one module per case), run from the checkout root
with

    pytest bench/ --benchmark-only

It is not collected by the main ``pytest`` run (``testpaths = ["tests"]``).
pytest-benchmark's own timer is wall time; the figures that matter (receiver
CPU per GiB, CPU per close, CPU of the closing side, truncated responses) are
in each benchmark's ``extra_info`` (``--benchmark-json`` keeps them).  Nothing
here asserts a speed: only that each case ran and did what it claims.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import common
from bench.cases import drain, many, server


@pytest.fixture(scope="session", autouse=True)
def nofile() -> int:
    """The soft RLIMIT_NOFILE raised to the hard limit (the benchmark's job)."""
    return common.raise_nofile(4 * 1024)


@pytest.fixture(scope="session")
def c_floor(tmp_path_factory: pytest.TempPathFactory) -> common.CFloor | None:
    """bench/c/drain_floor.c compiled with the system cc, or None (and why)."""
    tmp: Path = tmp_path_factory.mktemp("c_floor")
    floor = common.load_c_floor(str(tmp))
    return None if isinstance(floor, str) else floor


@pytest.fixture(scope="session")
def sender() -> Iterator[common.Worker]:
    with drain.sender_worker() as worker:
        yield worker


@pytest.fixture(scope="session")
def peers() -> Iterator[common.Worker]:
    with many.peer_worker() as worker:
        yield worker


@pytest.fixture(scope="session")
def clients() -> Iterator[common.Worker]:
    with server.client_worker() as worker:
        yield worker
