"""Command line: ``python -m pysock demo`` (also the ``pysock`` script)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pysock", description="Close TCP connections correctly and fast."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run every close policy live over loopback")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from pysock._demo import main as demo

        return demo()
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
