"""Reaper throughput: lingering closes per CPU-second through
``pysock.Reaper.submit`` (submit N, wait for every future) vs ``close_many`` of
the same N, with the peers of the many case (each sends a little and closes
within 0-500 ms; Drain(timeout=2)).

Only the Reaper's public API is used, so the case measures whichever engine
the Reaper has.  CPU is this whole process's (the submitting thread and the
reaper's own thread, Python or native)."""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import asdict
from typing import Any

import pysock

from ..common import Config, Progress, median, raise_nofile, ratios, rotated, target
from . import many

__all__ = ["COLUMNS", "CONTENDERS", "TITLE", "reaper_closer", "run"]

TITLE = "Reaper throughput: lingering closes per CPU-second, Reaper.submit vs close_many"
COLUMNS = (
    "contender",
    "n",
    "runs",
    "wall_s",
    "cpu_s",
    "cpu_us_per_conn",
    "closes_per_cpu_s",
    "sys_share",
    "wall_over_slowest",
    "outcomes",
)

SUBMIT = "Reaper.submit"
CONTENDERS = (SUBMIT, "pysock.close_many")


def reaper_closer(reaper: pysock.Reaper) -> many.Closer:
    """Submit every socket to ``reaper`` with Drain(timeout), then wait for
    all the futures."""

    def close_reaper(socks: list[socket.socket], timeout: float) -> Counter[str]:
        policy = pysock.Drain(timeout=timeout, idle=None)
        submit = reaper.submit
        futures = [submit(s, policy) for s in socks]
        return Counter(f.result(timeout + 30).reason for f in futures)

    return close_reaper


def run(cfg: Config, say: Progress) -> dict[str, Any]:
    n = cfg.reaper_n
    raise_nofile(n + 64)  # before the Reaper reads the limit for its ceiling
    samples: dict[tuple[str, int], list[many.ManySample]] = {(name, n): [] for name in CONTENDERS}
    with pysock.Reaper() as reaper, many.peer_worker() as peers:
        found: dict[str, many.Closer] = {
            SUBMIT: reaper_closer(reaper),
            "pysock.close_many": many.closers(None)["pysock.close_many"],
        }
        for rep in range(cfg.reaper_reps):
            for name in rotated(list(CONTENDERS), rep):
                s = many.run_one(peers, name, found[name], n, seed=7000 + rep)
                samples[(name, n)].append(s)
                say(
                    f"reaper n={n} rep {rep + 1}/{cfg.reaper_reps} {name}: wall {s.wall:.3f} s, "
                    f"CPU {s.cpu:.3f} s, {s.outcomes}"
                )
        stats = reaper.stats()
    rows = many.rows_of(samples)
    for row in rows:
        row["closes_per_cpu_s"] = n / row["cpu_s"] if row["cpu_s"] > 0 else float("nan")
    used = {name: [s.cpu for s in samples[(name, n)]] for name in CONTENDERS}
    # closes per CPU-second, Reaper / close_many = close_many CPU / Reaper CPU
    value = ratios(used["pysock.close_many"], used[SUBMIT])
    found_ratios = {
        f"Reaper closes per CPU-s / close_many closes per CPU-s (n={n})": value,
        f"Reaper wall / close_many wall (n={n})": ratios(
            [s.wall for s in samples[(SUBMIT, n)]],
            [s.wall for s in samples[("pysock.close_many", n)]],
        ),
    }
    return {
        "rows": rows,
        "ratios": found_ratios,
        "targets": [
            target(
                "reaper",
                f"Reaper.submit closes per CPU-s / close_many's (n={n})",
                value,
                0.8,
                ">=",
            )
        ],
        "reaper_stats": {
            "done": stats.done,
            "failed": stats.failed,
            "reclaimed": stats.reclaimed,
            "by_reason": dict(stats.by_reason),
        },
        "median_cpu_us_per_conn": {
            name: median([s.cpu / n * 1e6 for s in samples[(name, n)]]) for name in CONTENDERS
        },
        "samples": [asdict(s) for v in samples.values() for s in v],
    }
