"""Command line: ``python -m pysock demo`` / ``probe URL`` (also the ``pysock`` script)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pysock", description="Close TCP connections correctly and fast."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run every close policy live over loopback")
    from pysock._probe import add_arguments as probe_arguments

    probe = commands.add_parser(
        "probe",
        help="check a running HTTP server for the early-response trap",
        description="Send a request with a body to URL, read the response while sending (as "
        "curl and httpx do), and report whether it arrived whole: truncated, reset, FIN or "
        "RST, timings, a verdict, and the pysock integration that fixes a known server. "
        "Exit status 0: the response arrived whole; 1: it did not; 2: bad arguments or no "
        "connection.",
    )
    probe_arguments(probe)
    args = parser.parse_args(argv)
    if args.command == "probe":
        from pysock._probe import run as run_probe

        return run_probe(args)
    if args.command == "demo":
        from pysock._demo import main as demo

        return demo()
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":
    sys.exit(main())
