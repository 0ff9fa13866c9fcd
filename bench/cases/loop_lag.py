"""Event-loop lag with N lingering closes in flight: a thin wrapper that runs
the script ``bench/loop_lag.py`` (``python -m bench.loop_lag``; it prints its
report as one JSON line) once per run and variant, in a subprocess, and
gathers the spread.

Variants, order rotated per run: pysock.aio.close on the asyncio loop and on
uvloop (when installed), and the pure-asyncio lingering close (no reaper) on
the asyncio loop."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .. import ROOT
from ..common import BenchError, Config, Progress, median, rotated, target

__all__ = ["COLUMNS", "SCRIPT", "TITLE", "VARIANTS", "run", "run_one"]

TITLE = "Event-loop lag with lingering closes in flight (bench/loop_lag.py, one process per run)"
COLUMNS = (
    "variant",
    "n",
    "runs",
    "max_lag_ms",
    "max_lag_ms_range",
    "p99_lag_ms",
    "p99_lag_ms_range",
    "total_s",
    "results",
)

#: the script, run as ``python -m SCRIPT`` from the checkout root
SCRIPT = "bench.loop_lag"

# name -> (--path, --loop)
VARIANTS: dict[str, tuple[str, str]] = {
    "pysock.aio, asyncio loop": ("sink", "asyncio"),
    "pysock.aio, uvloop": ("sink", "uvloop"),
    "pure asyncio close, asyncio loop": ("asyncio", "asyncio"),
}


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run_one(path: str, loop: str, n: int, timeout: float = 180.0) -> dict[str, Any]:
    """One ``bench/loop_lag.py`` run; its JSON report."""
    cmd = [sys.executable, "-m", SCRIPT, "--n", str(n), "--path", path, "--loop", loop]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise BenchError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()[-500:]}")
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            report: dict[str, Any] = json.loads(line)
            return report
    raise BenchError(f"{' '.join(cmd)} printed no JSON report")


def run(cfg: Config, say: Progress) -> dict[str, Any]:
    variants = {k: v for k, v in VARIANTS.items() if v[1] != "uvloop" or _have_uvloop()}
    names = list(variants)
    n = cfg.loop_lag_n
    reports: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(cfg.loop_lag_runs):
        for name in rotated(names, r):
            path, loop = variants[name]
            rep = run_one(path, loop, n)
            reports[name].append(rep)
            say(
                f"loop_lag run {r + 1}/{cfg.loop_lag_runs} {name}: max {rep['max_lag_ms']} ms, "
                f"p99 {rep['p99_lag_ms']} ms, {rep.get('results')}"
            )
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    for name in names:
        rs = reports[name]
        maxes = [float(x["max_lag_ms"]) for x in rs]
        p99s = [float(x["p99_lag_ms"]) for x in rs]
        results: dict[str, int] = {}
        for x in rs:
            for k, v in (x.get("results") or {}).items():
                results[k] = results.get(k, 0) + int(v)
        rows.append(
            {
                "variant": name,
                "n": n,
                "runs": len(rs),
                "max_lag_ms": median(maxes),
                "max_lag_ms_range": f"{min(maxes):.3g}-{max(maxes):.3g}",
                "p99_lag_ms": median(p99s),
                "p99_lag_ms_range": f"{min(p99s):.3g}-{max(p99s):.3g}",
                "total_s": median([float(x["total_s"]) for x in rs]),
                "results": results,
            }
        )
        if name.startswith("pysock.aio"):
            targets.append(
                target("loop_lag", f"{name}: max lag, median of runs, ms", median(maxes), 5.0)
            )
            targets.append(
                target("loop_lag", f"{name}: p99 lag, median of runs, ms", median(p99s), 1.0)
            )
    return {"rows": rows, "ratios": {}, "targets": targets, "reports": reports}
