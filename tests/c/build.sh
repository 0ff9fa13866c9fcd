#!/usr/bin/env bash
# Build the C core's test programs into build/.
#
#   bash tests/c/build.sh native   # gcc (or $CC): build/test_core, build/test_reaper,
#                                  # build/test_drain_threads
#   bash tests/c/build.sh mingw    # x86_64-w64-mingw32-gcc: the same, .exe
#
# test_core checks the calls of one thread; test_reaper the reaper's native
# thread (csrc/reaper.c), with several threads of its own; test_drain_threads
# drains on several threads at once.  All three share tests/c/check.h (the
# check harness and socket helpers) and call the core through csrc/core.h
# (pysock.h's public API and the internal one).  Extra compiler
# flags come from the environment variable CFLAGS (e.g. the sanitizers).
# Exits non-zero if the build fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${1:-native}
read -r -a extra <<< "${CFLAGS:-}"
core=(csrc/op.c csrc/drain.c csrc/engine.c csrc/reaper.c)
mkdir -p build

case $target in
native)
    cc=${CC:-gcc}
    set -x
    for prog in test_core test_reaper test_drain_threads; do
        "$cc" -std=c99 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -pedantic -pthread \
            ${extra[@]+"${extra[@]}"} -Icsrc "${core[@]}" "tests/c/$prog.c" \
            -o "build/$prog" -lm
    done
    ;;
mingw)
    cc=${MINGW_CC:-x86_64-w64-mingw32-gcc}
    set -x
    for prog in test_core test_reaper test_drain_threads; do
        "$cc" -std=c99 -Wall -Wextra -Werror \
            ${extra[@]+"${extra[@]}"} -Icsrc "${core[@]}" "tests/c/$prog.c" \
            -o "build/$prog.exe" -lws2_32
    done
    ;;
*)
    echo "usage: $0 native|mingw" >&2
    exit 2
    ;;
esac
