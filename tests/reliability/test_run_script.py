"""stress/run.py: its command line and the report it writes (without running the parts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stress import run
from stress.common import PartResult, Problem
from stress.findings import FINDINGS, explain

ROOT = Path(__file__).resolve().parents[2]


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "stress" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


def test_the_report_fills_every_placeholder() -> None:
    result = PartResult("fuzz")
    result.row("hostile inputs: keystore", "10 inputs", "problems: 1")
    result.problems = [
        Problem("fuzz", "keystore", "unexpected exception", "RecursionError at decoder.py:353"),
        Problem("fuzz", "keystore", "unexpected exception", "KeyError at somewhere.py:1"),
    ]
    text = run.render([result], "a run", ROOT / "stress" / "reliability.md.in")
    assert "{{" not in text
    assert "| fuzz | hostile inputs: keystore | 10 inputs | problems: 1 |" in text
    assert "| R1 |" in text
    assert "**NEW**" in text  # the KeyError is not a known finding


def test_every_finding_names_an_existing_test() -> None:
    source = (ROOT / "tests" / "reliability" / "test_findings.py").read_text()
    for finding in FINDINGS:
        name = finding.test.split("::")[1].rstrip("*")
        assert f"def {name}" in source, finding.id


def test_findings_match_what_they_describe() -> None:
    problem = Problem("faults", "truncated body", "transient fault not recovered", "x")
    finding = explain(problem)
    assert finding is not None and finding.id == "R7"
