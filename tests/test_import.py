"""Importing pysock from a source tree whose C core was never built."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pysock


def test_source_tree_without_core_says_what_to_do(tmp_path: Path) -> None:
    # A copy of the package's Python files only, as a fresh clone has them.
    package = Path(pysock.__file__).parent
    # copyfile: copy2 calls CopyFile2 on Windows (3.12+), which Wine 8 lacks.
    shutil.copytree(
        package,
        tmp_path / "pysock",
        ignore=shutil.ignore_patterns("_core*"),
        copy_function=shutil.copyfile,
    )
    assert not list((tmp_path / "pysock").glob("_core*"))
    # -S: no site-packages, so no installed or editable pysock can stand in.
    proc = subprocess.run(
        # The copy goes first on sys.path explicitly: an embeddable Windows
        # CPython's ._pth file keeps the working directory off sys.path.
        [
            sys.executable,
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import pysock",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()
    assert any(line.startswith("ImportError: pysock's C core") for line in last), proc.stderr
    assert "ModuleNotFoundError" not in proc.stderr
    assert "pip install -e ." in proc.stderr
    assert str(tmp_path / "pysock") in proc.stderr


def test_built_core_imports() -> None:
    # The control: where the core exists, the same import works.
    proc = subprocess.run(
        [sys.executable, "-c", "import pysock, pysock._core; print(pysock._core.lib.ps_init())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
