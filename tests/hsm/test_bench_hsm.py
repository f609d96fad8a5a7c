"""bench/bench_hsm.py runs (quick mode) where SoftHSM2 is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_hsm_bench_runs(softhsm_token: tuple[str, Path]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_hsm.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "token / software" in result.stdout
    assert "RS256" in result.stdout and "ES256" in result.stdout
