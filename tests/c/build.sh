#!/usr/bin/env bash
# Build the C core's test program into build/.
#
#   bash tests/c/build.sh native   # gcc (or $CC): build/test_core
#   bash tests/c/build.sh mingw    # x86_64-w64-mingw32-gcc: build/test_core.exe
#
# Extra compiler flags come from the environment variable CFLAGS (e.g. the
# sanitizers).  Exits non-zero if the build fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${1:-native}
read -r -a extra <<< "${CFLAGS:-}"
sources=(csrc/linger.c csrc/drain.c csrc/reap.c tests/c/test_core.c)
mkdir -p build

case $target in
native)
    cc=${CC:-gcc}
    set -x
    "$cc" -std=c99 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -pedantic \
        ${extra[@]+"${extra[@]}"} -Icsrc "${sources[@]}" \
        -o build/test_core -lm
    ;;
mingw)
    cc=${MINGW_CC:-x86_64-w64-mingw32-gcc}
    set -x
    "$cc" -std=c99 -Wall -Wextra -Werror \
        ${extra[@]+"${extra[@]}"} -Icsrc "${sources[@]}" \
        -o build/test_core.exe -lws2_32
    ;;
*)
    echo "usage: $0 native|mingw" >&2
    exit 2
    ;;
esac
