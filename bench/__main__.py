"""``python -m bench [--quick] [--only SECTIONS] [--json [PATH]]``, from a
checkout root: every benchmark section, a table and the targets' verdicts."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    # Imported here, not at the top: the spawned worker processes import this
    # module again (as __mp_main__) and need none of it.
    from .report import SECTIONS
    from .report import main as run_bench

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="benchmark pysock against pure Python, asyncio and C over loopback",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write machine-readable results to PATH (or stdout: the table goes to stderr)",
    )
    parser.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"comma-separated subset of: {','.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    return run_bench(quick=args.quick, json_path=args.json, only=args.only)


if __name__ == "__main__":
    sys.exit(main())
