"""The benchmark scripts still run (quick mode). No timing is asserted: figures are
reported by the scripts, not judged here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("bench_sign.py", ["jwktool Signer", "jwktool open->ready", "jwktool sign"]),
        ("bench_token.py", ["cached get_token", "token requests for"]),
        ("bench_redis.py", ["RedisTokenCache.get hit", "token requests, shared cache"]),
        ("bench_async.py", ["cached await get_token", "token requests for 100 concurrent"]),
    ],
)
def test_bench_script_runs(script: str, expected: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for text in expected:
        assert text in result.stdout
    assert "goals missed:" in result.stdout
