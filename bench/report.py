"""Running the sections, the table, the JSON and the command line of
``python -m bench``."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import pysock

from .cases import drain, loop_lag, many, percall, reaper, server
from .common import FULL, QUICK, BenchError, CFloor, Config, Progress, load_c_floor, raise_nofile

if sys.platform != "win32":
    import resource

__all__ = ["SECTIONS", "main", "render", "run"]

SECTIONS = ("drain", "percall", "many", "reaper", "server", "loop_lag")
_NEEDS_FLOOR = {"drain", "percall", "many"}

_TITLES = {
    "drain": drain.TITLE,
    "percall": percall.TITLE,
    "many": many.TITLE,
    "reaper": reaper.TITLE,
    "server": server.TITLE,
    "loop_lag": loop_lag.TITLE,
}
_COLUMNS: dict[str, Sequence[str]] = {
    "drain": drain.COLUMNS,
    "percall": percall.COLUMNS,
    "many": many.COLUMNS,
    "reaper": reaper.COLUMNS,
    "server": server.COLUMNS,
    "loop_lag": loop_lag.COLUMNS,
}


def _run_section(name: str, cfg: Config, floor: CFloor | None, say: Progress) -> dict[str, Any]:
    if name == "drain":
        return drain.run(cfg, floor, say)
    if name == "percall":
        return percall.run(cfg, floor, say)
    if name == "many":
        return many.run(cfg, floor, say)
    if name == "reaper":
        return reaper.run(cfg, say)
    if name == "server":
        return server.run(cfg, say)
    if name == "loop_lag":
        return loop_lag.run(cfg, say)
    raise ValueError(f"unknown section {name!r}")


def verdict(t: dict[str, Any]) -> str:
    v, limit = t["value"], t["limit"]
    if v != v:  # NaN
        return "not measured"
    return "met" if (v <= limit if t["op"] == "<=" else v >= limit) else "MISSED"


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, dict):
        return " ".join(f"{k}={n}" for k, n in sorted(v.items()))
    return str(v)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    body = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in [list(columns), *body]) for i in range(len(columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
        for line in [list(columns), *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nofile = None
    if sys.platform != "win32":
        nofile = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    from pysock._binding import lib

    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = list(os.getloadavg())
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "os": platform.system(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pysock": pysock.__version__,
        "zero_copy_drain": bool(lib.ps_drain_zero_copy()),
        "nofile": nofile,
        "loadavg": load,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [
        f"pysock bench ({result['config']['name']}) on {m['nproc']} x {m['cpu']}, "
        f"{m['os']} {m['kernel']}, Python {m['python']}, {result['date']}"
    ]
    for name, section in result["sections"].items():
        out += ["", _TITLES[name], _table(section["rows"], _COLUMNS[name])]
        if section.get("c_floor"):
            out.append(f"(C floor: {section['c_floor']})")
        if section.get("skipped"):
            out.append(f"(skipped: {section['skipped']})")
        out += [f"  ratio {k}: {_fmt(v)}" for k, v in section["ratios"].items()]
    targets = [t for s in result["sections"].values() for t in s["targets"]]
    rows = [
        {
            "target": f"[{t['section']}] {t['name']}",
            "measured": t["value"],
            "limit": f"{t['op']} {_fmt(float(t['limit']))}",
            "verdict": verdict(t),
        }
        for t in targets
    ]
    out += ["", "Targets", _table(rows, ("target", "measured", "limit", "verdict"))]
    out.append(f"\nwhole run: {result['duration_s']:.1f} s")
    return "\n".join(out)


def run(cfg: Config, sections: Sequence[str], say: Progress) -> dict[str, Any]:
    started = time.monotonic()
    raise_nofile(2 * cfg.percall_batch + 64)
    result: dict[str, Any] = {
        "command": "python -m bench" + (" --quick" if cfg.name == "quick" else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "config": asdict(cfg),
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="pysock-bench-") as tmp:
        floor: CFloor | str | None = None
        floor_note = "compiled from bench/c/drain_floor.c"
        if _NEEDS_FLOOR & set(sections):
            floor = load_c_floor(tmp)
        if isinstance(floor, str):
            say(f"C floor skipped: {floor}")
            floor_note, floor = f"skipped: {floor}", None
        for name in sections:
            say(f"{name}: start")
            section = _run_section(name, cfg, floor, say)
            if name == "drain":
                section["c_floor"] = floor_note
            result["sections"][name] = section
    result["targets"] = [
        {**t, "verdict": verdict(t)} for s in result["sections"].values() for t in s["targets"]
    ]
    result["duration_s"] = time.monotonic() - started
    result["machine"]["loadavg_after"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO | None]:
    if path is None:
        yield None
    elif path == "-":
        yield sys.stdout
    else:
        with open(path, "w", encoding="utf-8") as f:
            yield f


def main(quick: bool = False, json_path: str | None = None, only: str | None = None) -> int:
    """``python -m bench [--quick] [--json [PATH]] [--only SECTIONS]``."""
    sections = list(SECTIONS)
    if only:
        sections = [s.strip() for s in only.split(",") if s.strip()]
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            print(f"unknown section(s) {unknown}; choose from {SECTIONS}", file=sys.stderr)
            return 2
    cfg = QUICK if quick else FULL
    say = Progress()
    table_stream = sys.stderr if json_path == "-" else sys.stdout
    say(f"pysock bench ({cfg.name}): {', '.join(sections)}; progress on stderr")
    try:
        result = run(cfg, sections, say)
    except BenchError as exc:
        print(f"pysock bench: {exc}", file=sys.stderr)
        return 1
    print(render(result), file=table_stream, flush=True)
    with _output(json_path) as f:
        if f is not None:
            json.dump(_jsonable(result), f, indent=2)
            f.write("\n")
    return 0
