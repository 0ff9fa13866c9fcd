#!/usr/bin/env bash
# Every OS branch of csrc/ (sys_posix.h, sys_win.h), compiled here with zig
# cc (PyPI ziglang), and the C test program run wherever this machine can
# run it.
#
#   bash .ci/cross.sh          # in a venv (nox -s cross makes one)
#
#  1. compile-only (-c), -std=c99 -Wall -Wextra -Werror -pedantic: every
#     file of csrc/ and tests/c/test_core.c, for macOS arm64/x86_64, FreeBSD
#     x86_64/aarch64, NetBSD and OpenBSD x86_64, Windows x86_64/arm64, Linux
#     musl x86_64 and glibc/musl aarch64;
#  2. the C test program linked for Linux aarch64 (glibc, musl) and x86_64
#     musl, each with the epoll engine and the poll engine (-DPS_FORCE_POLL),
#     and run: natively where the host has that architecture, else under
#     qemu-user.  Each run must end with "N passed, 0 failed".
#
# Only the runs link: zig builds each target's libc the first time it links
# for it (minutes on a cold cache), compile-only needs none of that.  The
# cache is ZIG_GLOBAL_CACHE_DIR (default ~/.cache/zig), so a second run on
# the same machine links in seconds.  CROSS_JOBS jobs run at once (default:
# the number of CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

t0=$SECONDS
# ---------------------------------------------------------------- tools
python -m pip install -q ziglang
zig=(python -m ziglang)
echo "zig $("${zig[@]}" version) (PyPI ziglang $(python -m pip show ziglang | sed -n 's/^Version: //p'))"

# qemu-user for aarch64, and Debian's aarch64 glibc (its loader and libc.so)
# for the dynamically linked glibc build; the musl builds are static.
ci_apt_install qemu-user-static libc6-arm64-cross
qemu-aarch64-static --version | head -1
glibc_root=/usr/aarch64-linux-gnu   # libc6-arm64-cross: lib/ld-linux-aarch64.so.1
[ -e "$glibc_root/lib/ld-linux-aarch64.so.1" ] || {
    echo "no aarch64 glibc loader under $glibc_root"; exit 1; }

export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/zig}"
export ZIG_LOCAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR"
mkdir -p "$ZIG_GLOBAL_CACHE_DIR"
echo "zig cache: $ZIG_GLOBAL_CACHE_DIR"
t_tools=$((SECONDS - t0))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ------------------------------------------------------------ the flags
# -D_DEFAULT_SOURCE on POSIX, as pysock/_build.py and tests/c/build.sh
# build (glibc and musl hide clock_gettime from plain -std=c99 without it).
warn=(-std=c99 -Wall -Wextra -Werror -pedantic -Icsrc)
sources=(csrc/*.c)
test_sources=("${sources[@]}" tests/c/test_core.c)

flags_for() { # target -> the OS's defines
    case $1 in
    *-windows-*) ;;
    *) echo -D_DEFAULT_SOURCE ;;
    esac
}

# zig's target names (python -m ziglang targets): no OS version suffix is
# needed, each OS defaults to a recent release (macOS 15, FreeBSD 14).
compile_targets=(
    aarch64-macos x86_64-macos
    x86_64-freebsd aarch64-freebsd
    x86_64-netbsd x86_64-openbsd
    x86_64-windows-gnu aarch64-windows-gnu
    x86_64-linux-musl aarch64-linux-gnu aarch64-linux-musl
)
# target:engine, linked and run
run_targets=(
    aarch64-linux-musl:epoll x86_64-linux-musl:epoll aarch64-linux-gnu:epoll
    aarch64-linux-musl:poll x86_64-linux-musl:poll aarch64-linux-gnu:poll
)

# ----------------------------------------------------------- job runner
# At most $jobs_max jobs at once; each writes its output to $work/NAME.log
# and its exit status to $work/NAME.rc.  A job runs where set -e is off (on
# the left of ||), so the job functions check each command themselves.
jobs_max=${CROSS_JOBS:-$(nproc)}
running=0
spawn() { # name command...
    local name=$1
    shift
    if [ "$running" -ge "$jobs_max" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    (
        rc=0
        "$@" >"$work/$name.log" 2>&1 || rc=$?
        echo "$rc" >"$work/$name.rc"
    ) &
    running=$((running + 1))
}
wait_all() {
    wait
    running=0
}
failed_jobs=()
check() { # name -> 0 if the job succeeded; prints its log if not
    local rc
    rc=$(cat "$work/$1.rc" 2>/dev/null || echo missing)
    if [ "$rc" != 0 ]; then
        echo "--- $1 failed (status $rc):"
        cat "$work/$1.log"
        failed_jobs+=("$1")
        return 1
    fi
}

compile_one() { # target: every file, compile-only
    local t=$1 f
    local -a os
    read -r -a os <<<"$(flags_for "$t")"
    local rc=0
    for f in "${test_sources[@]}"; do
        echo "$t: $f"
        "${zig[@]}" cc -target "$t" "${warn[@]}" ${os[@]+"${os[@]}"} \
            -c "$f" -o "$work/$t-$(basename "$f" .c).o" || rc=1
    done
    return "$rc"
}

link_one() { # target engine -> $work/bin/test_core-target-engine
    local t=$1 engine=$2 out="$work/bin/test_core-$1-$2" symbols
    local -a os extra=()
    read -r -a os <<<"$(flags_for "$t")"
    [ "$engine" = poll ] && extra+=(-DPS_FORCE_POLL)
    # zig cc builds without -O check undefined behaviour (UBSan).  Trapping
    # keeps the checks (a UB stops the program with SIGTRAP) and spares
    # building UBSan's runtime per target: a third of a cold-cache link.
    extra+=(-fsanitize-trap=undefined)
    case $t in *-musl) extra+=(-static) ;; esac
    "${zig[@]}" cc -target "$t" "${warn[@]}" ${os[@]+"${os[@]}"} \
        "${extra[@]}" "${test_sources[@]}" -o "$out" -lm || return 1
    # The engine asked for is the one built (nm reads any ELF).
    symbols=$(nm "$out") || return 1
    if grep -Eq ' [TUW] epoll_wait$' <<<"$symbols"; then
        [ "$engine" = epoll ] || { echo "$out uses epoll_wait"; return 1; }
    else
        [ "$engine" = poll ] || { echo "$out does not use epoll_wait"; return 1; }
    fi
    file "$out" 2>/dev/null || true
}

runner_for() { # target -> how this host runs it
    local arch=${1%%-*}
    if [ "$arch" = "$(uname -m)" ]; then
        echo native
    elif [ "$arch" = aarch64 ]; then
        echo qemu-aarch64-static
    else
        echo none
    fi
}

run_one() { # target engine
    local t=$1 engine=$2 bin="$work/bin/test_core-$1-$2" how rc=0
    local -a cmd=()
    how=$(runner_for "$t")
    case $how in
    native) ;;
    qemu-aarch64-static)
        cmd=(qemu-aarch64-static)
        case $t in *-gnu) cmd+=(-L "$glibc_root") ;; esac
        ;;
    *) echo "no way to run $t on $(uname -m)"; return 1 ;;
    esac
    timeout 300 ${cmd[@]+"${cmd[@]}"} "$bin" </dev/null || rc=$?
    [ "$rc" -eq 0 ] || { echo "exit status $rc"; return 1; }
}

# ------------------------------------------------- 1. compile-only, all
t1=$SECONDS
for t in "${compile_targets[@]}"; do
    spawn "compile-$t" compile_one "$t"
done
wait_all
for t in "${compile_targets[@]}"; do
    check "compile-$t" || true
done
t_compile=$((SECONDS - t1))
echo "compile-only: ${#compile_targets[@]} targets x ${#test_sources[@]} files in ${t_compile}s"
[ ${#failed_jobs[@]} -eq 0 ] || { echo "compile failures: ${failed_jobs[*]}"; exit 1; }

# --------------------------------------------- 2. link, then run, each
t2=$SECONDS
mkdir -p "$work/bin"
for r in "${run_targets[@]}"; do
    spawn "link-${r%:*}-${r#*:}" link_one "${r%:*}" "${r#*:}"
done
wait_all
for r in "${run_targets[@]}"; do
    check "link-${r%:*}-${r#*:}" || true
done
t_link=$((SECONDS - t2))
echo "linked ${#run_targets[@]} test programs in ${t_link}s"
[ ${#failed_jobs[@]} -eq 0 ] || { echo "link failures: ${failed_jobs[*]}"; exit 1; }

t3=$SECONDS
for r in "${run_targets[@]}"; do
    spawn "run-${r%:*}-${r#*:}" run_one "${r%:*}" "${r#*:}"
done
wait_all
declare -A ran=()
for r in "${run_targets[@]}"; do
    name="run-${r%:*}-${r#*:}"
    rc=$(cat "$work/$name.rc" 2>/dev/null || echo missing)
    last=$(tail -n 1 "$work/$name.log" 2>/dev/null || true)
    if [ "$rc" = 0 ] && ci_passed_line "$work/$name.log"; then
        ran[$r]=${last%%,*}
    else
        echo "--- $name failed (status $rc, or the last line is not 'N passed, 0 failed'):"
        cat "$work/$name.log"
        failed_jobs+=("$name")
        ran[$r]=FAILED
    fi
done
t_run=$((SECONDS - t3))

# -------------------------------------------------------------- summary
echo
printf '%-20s %-34s %-24s %-24s %s\n' target "compiled (-c, -Werror -pedantic)" \
    "ran, epoll engine" "ran, poll engine" "how"
for t in "${compile_targets[@]}"; do
    e=${ran[$t:epoll]:--}
    p=${ran[$t:poll]:--}
    how="compile only"
    [ "$e$p" = -- ] || how=$(runner_for "$t")
    printf '%-20s %-34s %-24s %-24s %s\n' "$t" "ok, ${#test_sources[@]} files" \
        "$e" "$p" "$how"
done
echo
echo "cross step timings: tools ${t_tools}s, compile-only ${t_compile}s," \
    "link ${t_link}s, runs ${t_run}s, total $((SECONDS - t0))s"
[ ${#failed_jobs[@]} -eq 0 ] || { echo "failed: ${failed_jobs[*]}"; exit 1; }
