"""pysock's benchmarks, run from a checkout root (``pip install -e .`` first):

    python -m bench [--quick] [--only SECTIONS] [--json [PATH]]

pysock against what a Python user can write today, against the servers' own
closes and against plain C, over loopback (127.0.0.1 only).  One module per
case under ``bench/cases/``, each running its contenders side by side in one
process run, alternating their order round by round, and reporting ratios
(medians of the per-round ratios), because shared machines are noisy:

- ``drain``     receiver CPU per GiB discarded, from a sender in another process
- ``percall``   CPU per close: pysock.abort / close(Graceful()) vs the standard
                library's setsockopt(SO_LINGER) + close vs the same calls from C
- ``many``      N connections whose peers (another process) send a little and
                close within 0-500 ms, closed with Drain(timeout=2):
                close_many vs a thread pool vs asyncio vs a minimal C program
- ``reaper``    the same peers through Reaper.submit vs close_many: lingering
                closes per CPU-second
- ``server``    an HTTP/1.1-style server answering an early 413 without reading
                the request body: plain close (the control that truncates) vs
                gunicorn's close_graceful vs a Python recv-loop vs pysock Drain
- ``loop_lag``  the script bench/loop_lag.py run in a subprocess, the spread
                over runs

``bench.common`` holds the configuration, worker processes, median-of-ratios
helpers and the C floors (bench/c/drain_floor.c, compiled at bench time with
the system cc and loaded with ctypes; without a compiler they are skipped, and
said so); ``bench.report`` the table, the JSON and the command line.  Every
wait is bounded in bytes and time, and every process and socket started here
is cleaned up.  Nothing here asserts a speed: timing is reported, never judged
pass/fail.

The same case modules drive ``pytest bench/ --benchmark-only``.  Beside them,
standalone scripts, each ``python -m bench.<name>`` from the checkout root:
``loop_lag`` (event-loop lag), ``servers`` (uvicorn and gunicorn with the
integration vs without), ``syscalls`` (system calls per close, with strace).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HERE", "ROOT"]

#: This package's folder, bench/ (the C floor's source, the scripts).
HERE = Path(__file__).resolve().parent
#: The checkout root: the working directory of every ``python -m bench.<script>``
#: a benchmark starts, so that ``bench`` and ``tests`` import as packages.
ROOT = HERE.parent
