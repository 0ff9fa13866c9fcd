"""cffi build script (out-of-line, API mode): compiles csrc/ into pysock._core.

The cdef is the part of csrc/pysock.h between its cdef markers, so the C API
is declared once: pysock.h is the public header, exactly what Python calls
(csrc/core.h holds what only the C files and the C test programs use).
Extra compiler flags come from the environment variable PYSOCK_CFLAGS (CI
sets ``-Wall -Wextra -Werror``, or the sanitizers), and
PYSOCK_BACKEND=poll builds the portable poll() engine on Linux instead of
epoll (the backend macOS and the BSDs use), so that path is tested here.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = ["op.c", "drain.c", "engine.c", "reaper.c"]


def _cdef() -> str:
    header = (CSRC / "pysock.h").read_text(encoding="utf-8")
    start = header.index("/* cdef-begin */")
    end = header.index("/* cdef-end */")
    return header[start:end]


def _flags() -> tuple[list[str], list[str]]:
    extra = shlex.split(os.environ.get("PYSOCK_CFLAGS", ""))
    compile_args = list(extra)
    link_args = [f for f in extra if f.startswith("-fsanitize")]
    backend = os.environ.get("PYSOCK_BACKEND", "")
    if backend == "poll":
        compile_args.append("-DPS_FORCE_POLL")
    elif backend not in ("", "default", "epoll"):
        raise SystemExit(f"PYSOCK_BACKEND must be 'poll' or unset, not {backend!r}")
    if sys.platform != "win32":
        compile_args.insert(0, "-std=c99")
        compile_args.append("-D_DEFAULT_SOURCE")
        # cffi's generated glue is not ours to keep -Wextra clean.
        compile_args += ["-Wno-unused-parameter", "-Wno-missing-field-initializers"]
        # The reaper's thread (csrc/reaper.c): pthreads.
        compile_args.append("-pthread")
        link_args.append("-pthread")
    return compile_args, link_args


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
_compile_args, _link_args = _flags()
ffibuilder.set_source(
    "pysock._core",
    '#include "pysock.h"\n',
    sources=[str((CSRC / name).relative_to(ROOT)) for name in SOURCES],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    libraries=["ws2_32"] if sys.platform == "win32" else [],
    extra_compile_args=_compile_args,
    extra_link_args=_link_args,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
