# shellcheck shell=bash
# Shell helpers shared by pysock's CI: .ci/run, noxfile.py's sessions,
# .ci/cross.sh and .ci/windows-python.sh.  Source it, or run one helper:
#
#   . .ci/lib.sh && ci_apt_install curl
#   bash .ci/lib.sh ci_apt_install curl libtsan2
#   bash .ci/lib.sh ci_wine_programs build/test_core.exe build/test_reaper.exe
#
# Every helper fails (non-zero) rather than going on half done; none changes
# the caller's shell options.

# ci_apt_install PACKAGE...
#   Installs the Debian packages of the list that are not installed yet, in
#   one apt-get call (as root, else through sudo); does nothing when all are
#   there.  apt-get update runs at most once per CI run: .ci/run sets
#   PYSOCK_CI_RUN_DIR, where a stamp records it (without it, at most once per
#   shell).  --no-install-recommends: only what each package needs.
ci_apt_install() {
    local pkg
    local -a missing=() sudo=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
            missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    if ! command -v apt-get >/dev/null; then
        echo "ci_apt_install: no apt-get here (not Debian): install ${missing[*]} yourself" >&2
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "ci_apt_install: not root and no sudo: cannot install ${missing[*]}" >&2
            return 1
        }
        sudo=(sudo)
    fi
    local stamp=${PYSOCK_CI_RUN_DIR:+$PYSOCK_CI_RUN_DIR/apt-updated}
    if [ -z "${CI_APT_UPDATED:-}" ] && { [ -z "$stamp" ] || [ ! -e "$stamp" ]; }; then
        echo "apt-get update"
        "${sudo[@]}" apt-get update -qq || return 1
        CI_APT_UPDATED=1
        [ -z "$stamp" ] || : >"$stamp"
    fi
    echo "installing: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# ci_passed_line FILE
#   Succeeds when FILE's last line is exactly "N passed, 0 failed": what a
#   C test program prints last when every check passed.
ci_passed_line() {
    tail -n 1 "$1" | grep -Eq '^[0-9]+ passed, 0 failed$'
}

# ci_wine_prefix DIR
#   Exports Wine's settings for a 64-bit prefix in DIR (made if missing, and
#   set to report Windows 10): no debug output, no Mono or Gecko installer
#   prompts (there is no display).  Making the prefix prints one complaint,
#   that syswow64\rundll32.exe is missing: the absent 32-bit Wine, harmless.
#   Wine's console writes CRLF: every output here has its CRs stripped.
ci_wine_prefix() {
    export WINEPREFIX="$1" WINEDEBUG=-all WINEARCH=win64
    export WINEDLLOVERRIDES="mscoree=;mshtml="
    mkdir -p "$WINEPREFIX"
    if [ ! -e "$WINEPREFIX/system.reg" ]; then
        timeout 180 wine winecfg /v win10 </dev/null 2>&1 | tr -d '\r'
        return "${PIPESTATUS[0]}"
    fi
}

# ci_wine_programs EXE...
#   Runs each Windows C test program under Wine, in a fresh prefix removed
#   afterwards; fails unless every one exits 0 with "N passed, 0 failed" as
#   its last line.  All of them run, then the failures are named.
ci_wine_programs() (
    local exe out rc
    local -a bad=()
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # $tmp is fixed now
    trap "wineserver -k 2>/dev/null || true; rm -rf '$tmp'" EXIT
    ci_wine_prefix "$tmp/prefix" || { echo "could not make a Wine prefix"; return 1; }
    set +e  # each program's status is read from PIPESTATUS
    for exe in "$@"; do
        echo "--- $exe under Wine"
        out=$tmp/$(basename "$exe").txt
        timeout 300 wine "$exe" </dev/null | tr -d '\r' | tee "$out"
        rc=${PIPESTATUS[0]}
        if [ "$rc" -ne 0 ] || ! ci_passed_line "$out"; then
            bad+=("$exe (status $rc)")
        fi
    done
    if [ ${#bad[@]} -gt 0 ]; then
        printf 'failed under Wine: %s\n' "${bad[@]}"
        return 1
    fi
)

# Run as a script: the first argument names the helper.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case ${1:-} in
    ci_apt_install | ci_passed_line | ci_wine_programs) "$@" ;;
    *)
        echo "usage: bash .ci/lib.sh ci_apt_install PKG... | ci_wine_programs EXE... | ci_passed_line FILE" >&2
        exit 2
        ;;
    esac
fi
