"""pysock's CI, one nox session per step.

    nox -l                the steps, in the order CI runs them
    nox -s NAME           one step alone, e.g. nox -s lint, nox -s tests
    nox -s NAME -- ARGS   the same, ARGS passed to pytest (e.g. -x, -k drain)
    bash .ci/run          every step in order on a fresh machine, timed

Each step runs from the checkout root, on Linux (CI's machine is Debian 12
with CPython 3.11, other CPythons under /root/.pyenv; ``tests`` also runs on
macOS and Windows).  A step that needs a Debian package installs it when it is
missing, through .ci/lib.sh's ci_apt_install.  The development dependencies
are pyproject.toml's [dependency-groups].

The steps that build pysock in place (pip install -e .) share the source
tree's pysock/_core*.so: each builds the variant it tests first (-Werror,
poll, ASan/UBSan), and a sanitizer build is removed when its step ends.  The
wheel steps share the repaired wheel in dist/repaired/, built by ``dist`` or,
when it is missing or was built from other sources, by the step itself.
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"  # nox.project.dependency_groups
nox.options.error_on_external_run = True

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

# The README's two set-up commands, run exactly as written there.
DEMO_COMMAND = "pip install . && pysock demo"
TEST_COMMAND = "pip install --upgrade pip && pip install --group test -e . && pytest"

WINDOWS = sys.platform == "win32"
# gcc's and clang's warnings as errors (MSVC takes none of these flags).
WERROR = "" if WINDOWS else "-Wall -Wextra -Werror"
ASAN = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
PYTEST = ("-q", "-p", "no:cacheprovider")
# The integration suite fails instead of skipping when a server, a client or
# curl is missing (it skips on Windows whatever this says).
REQUIRE_INTEGRATION = {"PYSOCK_REQUIRE_INTEGRATION": None if WINDOWS else "1"}

# The C core's test programs (tests/c/build.sh builds each into build/).
C_PROGRAMS = sorted(p.stem for p in (ROOT / "tests" / "c").glob("test_*.c"))
PASSED_LINE = re.compile(r"^[0-9]+ passed, 0 failed$")

DIST = ROOT / "dist"
REPAIRED = DIST / "repaired"
STAMP = REPAIRED / "SOURCE"  # which sources the repaired wheel was built from
# Copied beside the tests for a run against an installed wheel (as
# cibuildwheel's test-sources): pytest's settings, no pysock/ source tree.
TEST_SOURCES = ("tests", "examples", "pyproject.toml")


# Each pin (argv) is an exact one (==) and is what is installed.
CHECK_PINS = """\
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement

bad = []
for line in sys.argv[1:]:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    pinned = [s.version for s in req.specifier if s.operator == "=="]
    try:
        got = version(req.name)
    except PackageNotFoundError:
        got = "nothing"
    if len(pinned) != 1 or got != pinned[0]:
        bad.append(f"{line} (installed: {got})")
    else:
        print(f"{req.name} {got}")
if bad:
    sys.exit("not exact pins of what is installed: " + "; ".join(bad))
"""


# --------------------------------------------------------------- helpers


def _groups(*names: str) -> list[str]:
    """The requirements of pyproject.toml's dependency groups (any pip)."""
    return list(nox.project.dependency_groups(PYPROJECT, *names))


def _apt(session: nox.Session, *packages: str) -> None:
    """The Debian packages, installed if missing (.ci/lib.sh)."""
    session.run("bash", ".ci/lib.sh", "ci_apt_install", *packages, external=True)


def _need_curl(session: nox.Session) -> None:
    """curl: the integration tests' third client."""
    if shutil.which("curl") is None:
        _apt(session, "curl")
    out = session.run("curl", "--version", silent=True, external=True)
    print(str(out).splitlines()[0])


def _readme_command(session: nox.Session, command: str) -> str:
    """``command``, which must be a line of README.md as it is."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    if command not in lines:
        session.error(f"README.md has no line {command!r} (the command this step runs)")
    print(f"README command: {command}")
    return command


def _remove_build() -> None:
    """No in-place build left: the next pip install -e . compiles afresh."""
    for path in glob.glob(str(ROOT / "pysock" / "_core*.so")) + glob.glob(
        str(ROOT / "pysock" / "_core*.pyd")
    ):
        os.remove(path)
    for path in (ROOT / "pysock" / "_core.c", ROOT / "build"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _install_inplace(
    session: nox.Session,
    *groups: str,
    cflags: str = WERROR,
    backend: str | None = None,
) -> Path:
    """pip install -e . (with ``groups``), built afresh with PYSOCK_CFLAGS
    ``cflags`` and PYSOCK_BACKEND ``backend``; returns the extension."""
    _remove_build()
    env = {"PYSOCK_CFLAGS": cflags, "PYSOCK_BACKEND": backend}
    session.install(*_groups(*groups), "-e", ".", env=env)
    built = glob.glob(str(ROOT / "pysock" / "_core*.so"))
    if len(built) != 1:
        session.error(f"expected one pysock/_core*.so after the build, found {built}")
    return Path(built[0])


def _uses_epoll(session: nox.Session, *nm_args: str) -> bool:
    symbols = str(session.run("nm", *nm_args, silent=True, external=True))
    return "epoll_wait" in symbols


def _build_c(session: nox.Session, cflags: str = "", target: str = "native") -> None:
    session.run("bash", "tests/c/build.sh", target, env={"CFLAGS": cflags}, external=True)


def _run_c(session: nox.Session, env: dict[str, str] | None = None) -> None:
    """Every C test program: each must exit 0 and print "N passed, 0
    failed" last (its standard error goes straight to the terminal)."""
    for prog in C_PROGRAMS:
        out = str(
            session.run(f"./build/{prog}", env=env or {}, silent=True, stderr=None, external=True)
        )
        print(out, end="")
        lines = out.rstrip("\n").splitlines()
        if not lines or not PASSED_LINE.match(lines[-1]):
            session.error(f"build/{prog}: the last line is not 'N passed, 0 failed'")


def _source_fingerprint() -> str:
    """What the sources are now: the commit, the uncommitted changes and the
    untracked files (empty when git cannot tell: build again)."""
    digest = hashlib.sha256()
    try:
        for args in (["rev-parse", "HEAD"], ["diff", "HEAD", "--binary"]):
            digest.update(
                subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout
            )
        untracked = subprocess.run(
            ["git", "ls-files", "-z", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    for name in sorted(filter(None, untracked.split(b"\0"))):
        digest.update(name)
        path = ROOT / os.fsdecode(name)
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_dist(session: nox.Session) -> Path:
    """python -m build (sdist and wheel, -Werror) into dist/, the wheel
    repaired by auditwheel into dist/repaired/; returns the repaired wheel."""
    shutil.rmtree(DIST, ignore_errors=True)
    fingerprint = _source_fingerprint()
    session.run("python", "-m", "build", "--outdir", "dist", ".", env={"PYSOCK_CFLAGS": WERROR})
    session.run("auditwheel", "repair", "--wheel-dir", str(REPAIRED), *glob.glob("dist/*.whl"))
    wheels = glob.glob(str(REPAIRED / "*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one repaired wheel, found {wheels}")
    if fingerprint:
        STAMP.write_text(fingerprint + "\n", encoding="utf-8")
    return Path(wheels[0])


def _repaired_wheel(session: nox.Session) -> Path:
    """dist/repaired's wheel when it was built from these sources, else a
    new one (this session then installs the dist group to build it)."""
    wheels = glob.glob(str(REPAIRED / "*.whl"))
    fingerprint = _source_fingerprint()
    built_from = STAMP.read_text(encoding="utf-8").strip() if STAMP.exists() else ""
    if len(wheels) == 1 and fingerprint and built_from == fingerprint:
        print(f"the wheel of nox -s dist: {wheels[0]}")
        return Path(wheels[0])
    print("no wheel in dist/repaired/ built from these sources: building one")
    session.install(*_groups("dist"))
    return _build_dist(session)


def _test_wheel(session: nox.Session, python: str, wheel: Path, *pytest_args: str) -> None:
    """``wheel`` installed in a fresh venv of ``python`` with the test-wheel
    group, the test suite run from a copy of the tests: pysock must come from
    that venv's site-packages, with no source tree anywhere near."""
    with tempfile.TemporaryDirectory(prefix="pysock-wheel-") as tmp:
        venv_python = f"{tmp}/venv/bin/python"
        session.run(python, "-m", "venv", f"{tmp}/venv", external=True)
        session.run(venv_python, "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)
        session.run(
            venv_python,
            "-m",
            "pip",
            "install",
            "-q",
            str(wheel),
            *_groups("test-wheel"),
            external=True,
        )
        run = Path(tmp) / "run"
        run.mkdir()
        for name in TEST_SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, run / name)
            else:
                shutil.copy2(ROOT / name, run / name)
        with session.chdir(run):
            where = str(
                session.run(
                    venv_python,
                    "-c",
                    "import sys, sysconfig, pysock, pysock._core\n"
                    "print(sys.version.split()[0], sysconfig.get_path('purelib'))\n"
                    "print(pysock.__file__)\nprint(pysock._core.__file__)",
                    silent=True,
                    external=True,
                )
            ).split()
            version, site, files = where[0], where[1], where[2:]
            print(f"CPython {version}: {' '.join(files)}")
            for file in files:
                if not file.startswith(os.path.join(site, "pysock") + os.sep):
                    session.error(f"pysock is not imported from the wheel in {site}: {file}")
            # No PYSOCK_REQUIRE_INTEGRATION: the venv has no servers, so the
            # integration suite skips.
            session.run(
                venv_python,
                "-m",
                "pytest",
                *PYTEST,
                *pytest_args,
                "tests",
                *session.posargs,
                env={"PYSOCK_REQUIRE_INTEGRATION": None},
                external=True,
            )


# ---------------------------------------------------------------- steps


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, mypy --strict pysock."""
    # mypy reads the servers' own types (the integrations subclass them).
    session.install(*_groups("lint", "test"))
    session.run("ruff", "check", "pysock", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "pysock", "tests", "bench", "noxfile.py")
    session.run("mypy", "--strict", "pysock")


@nox.session(venv_backend="none")
def c(session: nox.Session) -> None:
    """The C core's test programs, native (-Werror)."""
    _build_c(session)
    _run_c(session)


@nox.session(venv_backend="none")
def c_asan(session: nox.Session) -> None:
    """The C test programs under ASan/UBSan (leaks included)."""
    _build_c(session, ASAN)
    _run_c(session, {"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})


@nox.session(venv_backend="none")
def c_tsan(session: nox.Session) -> None:
    """The C test programs under ThreadSanitizer (epoll and poll engines)."""
    # gcc's TSan runtime: Debian 12's gcc 12 depends on libtsan2, so it is
    # normally there; installed only if gcc cannot find it.
    libtsan = str(session.run("gcc", "-print-file-name=libtsan.so", silent=True, external=True))
    if libtsan.strip() == "libtsan.so":
        _apt(session, "libtsan2")
    # A data race fails the run (halt_on_error: the program exits non-zero at
    # the first report).  test_drain_threads drains on several threads and
    # the reaper's at once: each engine's discard buffer is its own.
    for engine in ("", "-DPS_FORCE_POLL"):
        _build_c(session, f"-fsanitize=thread -g -O1 {engine}".strip())
        _run_c(session, {"TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"})


@nox.session
def tests(session: nox.Session) -> None:
    """The README's test command, -Werror build, integration suite required.

    The integration suite must run, not skip: the servers and clients come
    with the test group, curl from Debian."""
    command = _readme_command(session, TEST_COMMAND)
    if sys.platform == "linux":
        _need_curl(session)
    _remove_build()
    env = {"PYSOCK_CFLAGS": WERROR, "PYSOCK_BACKEND": None, **REQUIRE_INTEGRATION}
    # `a && b && c`, each part run in this session's venv, pytest last.
    parts = [shlex.split(part) for part in command.split(" && ")]
    for i, argv in enumerate(parts):
        if WINDOWS and argv[0] == "pip":  # pip cannot replace its own pip.exe
            argv = ["python", "-m", *argv]
        if i == len(parts) - 1:
            argv += [*PYTEST, *session.posargs]
        session.run(*argv, env=env)


@nox.session
def integrations_oldest(session: nox.Session) -> None:
    """The integration suite, every server at its oldest supported version.

    The pins are pysock.integrations._registry's oldest_requirements(): what
    the README's "versions tested" column says is what runs here."""
    if not (ROOT / "pysock" / "integrations" / "_registry.py").exists():
        session.error(
            "pysock/integrations/_registry.py is missing: it lists each server's oldest "
            "supported version (oldest_requirements()), which this step installs"
        )
    _need_curl(session)
    _install_inplace(session)
    out = session.run(
        "python",
        "-c",
        "from pysock.integrations._registry import oldest_requirements\n"
        "print('\\n'.join(oldest_requirements()))",
        silent=True,
    )
    pins = [line.strip() for line in str(out).splitlines() if line.strip()]
    if not pins:
        session.error("oldest_requirements() gave no pins")
    print("oldest supported versions:\n  " + "\n  ".join(pins))
    # One resolve: the pins, and the rest of the test group around them.
    session.install(*_groups("test"), *pins)
    session.run("python", "-m", "pip", "check")
    print("each pin is an exact one, and what is installed:")
    session.run("python", "-c", CHECK_PINS, *pins, log=False)
    session.run(
        "python",
        "-m",
        "pytest",
        *PYTEST,
        "-m",
        "integration",
        *session.posargs,
        env=REQUIRE_INTEGRATION,
    )


@nox.session
def poll(session: nox.Session) -> None:
    """The poll() engine (PYSOCK_BACKEND=poll): C test programs, whole suite.

    The engine macOS and the BSDs use, built on Linux instead of epoll."""
    _need_curl(session)
    _build_c(session, "-DPS_FORCE_POLL")
    for prog in C_PROGRAMS:
        if _uses_epoll(session, f"build/{prog}"):
            session.error(f"build/{prog} still uses epoll")
    _run_c(session)
    core = _install_inplace(session, "test", backend="poll")
    if _uses_epoll(session, "-D", str(core)):
        session.error("PYSOCK_BACKEND=poll still built the epoll engine")
    session.run("python", "-m", "pytest", *PYTEST, *session.posargs, env=REQUIRE_INTEGRATION)
    core = _install_inplace(session, "test")  # back to the default build
    if not _uses_epoll(session, "-D", str(core)):
        session.error("the default build does not use epoll")


@nox.session
def sanitizers(session: nox.Session) -> None:
    """The whole suite on an ASan/UBSan build, LeakSanitizer on."""
    _need_curl(session)
    core = _install_inplace(session, "test", cflags=f"{WERROR} {ASAN}")
    if "__asan_" not in str(session.run("nm", "-D", str(core), silent=True, external=True)):
        session.error(f"{core.name} is not instrumented by ASan: were the flags ignored?")
    asan_rt = str(session.run("gcc", "-print-file-name=libasan.so", silent=True, external=True))
    if not os.path.isabs(asan_rt.strip()):
        session.error("gcc does not know where libasan.so is")
    # .ci/lsan.supp names only the interpreter's allocator entry points
    # (memory CPython keeps until exit), so a leak whose stack shows pysock's
    # own C functions is still reported and fails the run.
    env = {
        "LD_PRELOAD": asan_rt.strip(),
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
        "LSAN_OPTIONS": f"suppressions={ROOT}/.ci/lsan.supp:print_suppressions=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        **REQUIRE_INTEGRATION,
    }
    try:
        session.run("python", "-m", "pytest", *PYTEST, *session.posargs, env=env)
    finally:
        _remove_build()  # a sanitizer build loads only with its runtime preloaded


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """The README's demo command, in a fresh clone and a fresh venv.

    Pasted at the clone's root, as a newcomer does first: no editable
    install, no build left behind, the clone's pysock/ first on sys.path."""
    command = _readme_command(session, DEMO_COMMAND)
    with tempfile.TemporaryDirectory(prefix="pysock-demo-") as tmp:
        session.run("git", "clone", "-q", str(ROOT), f"{tmp}/clone", external=True)
        session.run(sys.executable, "-m", "venv", f"{tmp}/venv", external=True)
        session.run(
            "bash",
            "-c",
            'set -euo pipefail; cd "$1/clone"; source "$1/venv/bin/activate";'
            ' python -m pip install -q --upgrade pip; timeout 300 bash -c "$2"',
            "demo",
            tmp,
            command,
            env={"PYSOCK_CFLAGS": None, "PYSOCK_BACKEND": None},
            external=True,
        )


@nox.session
def bench_quick(session: nox.Session) -> None:
    """python -m bench --quick: the benchmarks still run (speed not asserted)."""
    _install_inplace(session, "test")
    session.run("timeout", "180", "python", "-m", "bench", "--quick", external=True)


@nox.session
def workflows(session: nox.Session) -> None:
    """The workflows (actionlint, schema, zizmor), the scripts (ShellCheck)."""
    session.install(*_groups("workflows"))
    files = sorted(glob.glob(".github/workflows/*.yml") + glob.glob(".github/workflows/*.yaml"))
    session.run("actionlint", "-version")
    session.run("actionlint", "-no-color", *files)
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files)
    session.run("zizmor", "--offline", ".github/workflows/")
    # Every shell script (git's, and .ci/'s even before a commit); -x reads
    # .ci/lib.sh where a script sources it.
    tracked = subprocess.run(
        ["git", "ls-files", "*.sh"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    scripts = sorted({".ci/run", *tracked, *glob.glob(".ci/*.sh")})
    session.run("shellcheck", "-x", *scripts)


@nox.session
def dist(session: nox.Session) -> None:
    """sdist and wheel: check-manifest, auditwheel, abi3audit, contents.

    python -m build with -Werror; the wheel repaired by auditwheel
    (manylinux) into dist/repaired/, which the wheel steps test."""
    session.install(*_groups("dist"))
    wheel = _build_dist(session)
    session.run("check-manifest")
    # Every C file git knows is in the sdist (pip builds it elsewhere).
    sdist = glob.glob("dist/*.tar.gz")
    if len(sdist) != 1:
        session.error(f"expected one sdist, found {sdist}")
    with tarfile.open(sdist[0]) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    tracked = subprocess.run(
        ["git", "ls-files", "csrc"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if not tracked or not set(tracked) <= members:
        session.error(f"the sdist lacks csrc/ files: {sorted(set(tracked) - members) or 'all'}")
    session.run("ls", "-l", "dist", str(REPAIRED), external=True)
    # One abi3 wheel for CPython >= 3.10, manylinux, this machine's arch.
    name = wheel.name
    if not re.fullmatch(
        rf"pysock_linger-.+-cp310-abi3-manylinux.*_{platform.machine()}\.whl", name
    ):
        session.error(f"unexpected wheel name: {name}")
    with zipfile.ZipFile(wheel) as whl:
        bench = [n for n in whl.namelist() if re.search(r"(^|/)_?bench(/|\.py$)", n)]
    if bench:
        session.error(f"the wheel ships benchmark code: {bench}")
    session.run("auditwheel", "show", str(wheel))
    session.run("abi3audit", "--strict", "--report", str(wheel))


@nox.session
def wheel(session: nox.Session) -> None:
    """The repaired wheel in a fresh venv: the whole suite, from a copy of tests/.

    The integration suite skips there (no servers in that venv)."""
    _test_wheel(session, sys.executable, _repaired_wheel(session))


@nox.session
def wheel_other(session: nox.Session) -> None:
    """The same abi3 wheel on CPython 3.10, 3.12, 3.13 (those under pyenv).

    A version this machine lacks is reported, not faked; the integration
    suite is left out."""
    wheel = _repaired_wheel(session)
    for version in ("3.10", "3.12", "3.13"):
        found = sorted(
            glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python3"),
            key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/")[-3])],
        )
        if not found:
            print(f"CPython {version}: not on this machine, not run")
            continue
        _test_wheel(session, found[-1], wheel, "-m", "not integration")


@nox.session
def cross(session: nox.Session) -> None:
    """zig cc: every OS branch compiled, C tests on aarch64 (qemu) and musl."""
    session.run("bash", ".ci/cross.sh", external=True)


@nox.session(venv_backend="none")
def wine_c(session: nox.Session) -> None:
    """Windows: the mingw-w64 build (-Werror), the C test programs under Wine."""
    # Debian's packages: the cross compiler, and Wine's 64-bit loader (wine64)
    # with its launcher (wine).  No i386 architecture is needed for 64-bit
    # programs; no recommends leaves out 32-bit Wine, fonts, Mono and Gecko.
    _apt(session, "gcc-mingw-w64-x86-64", "wine", "wine64")
    session.run("x86_64-w64-mingw32-gcc", "-dumpfullversion", external=True)
    session.run("wine", "--version", external=True)
    _build_c(session, target="mingw")
    exes = [f"build/{prog}.exe" for prog in C_PROGRAMS]
    session.run("bash", ".ci/lib.sh", "ci_wine_programs", *exes, external=True)


@nox.session
def wine_python(session: nox.Session) -> None:
    """Windows: the whole suite under Wine, embeddable CPython 3.13 and 3.10.

    The real abi3 _core.pyd, built with mingw-w64 (.ci/windows-python.sh)."""
    session.run("bash", ".ci/windows-python.sh", "3.13", "3.10", external=True)
