"""The documentation site builds with `mkdocs build --strict` (warnings are errors)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from .examples import ROOT


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (it comes with the [test] extra)",
)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    built = {p.relative_to(site).as_posix() for p in site.rglob("*")}
    for page in ("index.html", "try-locally/index.html", "cli/index.html", "rotation/index.html"):
        assert page in built
    assert not any(p.endswith(".py") for p in built), "docs/*.py must not be published"
