"""Hostile input to every parser (short Hypothesis runs; the full run is stress/run.py).

The only acceptable outcomes are success or a documented error; a problem the
run finds must be a known finding (stress/findings.py, each reproduced in
test_findings.py) -- anything else fails here.
"""

from __future__ import annotations

import pytest

from stress import fuzz
from stress.findings import unexplained

#: Inputs per target in the normal suite (a few seconds each).
SHORT = {
    "keystore": 80,
    "key-import": 60,
    "token-response": 80,
    "discovery": 100,
    "inspect": 200,
    "token-cache": 60,
    "config": 100,
}


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_hostile_input_gives_success_or_a_documented_error(target: str) -> None:
    stats, problems = fuzz.run_target(target, SHORT[target], seed=6, cli_every=5)
    assert stats.inputs == SHORT[target]
    assert stats.cli_runs > 0
    new = unexplained(problems.items)
    assert not new, "\n".join(p.line() for p in new)


@pytest.mark.slow
@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_hostile_input_long(target: str) -> None:
    _, problems = fuzz.run_target(target, 20 * SHORT[target], seed=61)
    new = unexplained(problems.items)
    assert not new, "\n".join(p.line() for p in new)


@pytest.mark.slow
@pytest.mark.skipif(not fuzz.atheris_available(), reason="atheris is not installed")
@pytest.mark.parametrize("target", fuzz.TARGETS[:5])
def test_atheris(target: str) -> None:
    count, found, status = fuzz.run_atheris(target, 5000)
    assert status == "ran", status
    assert count >= 5000
    from stress.common import Problem

    problems = [Problem("fuzz", target, "unexpected exception (atheris)", f) for f in found]
    new = unexplained(problems)
    assert not new, "\n".join(p.line() for p in new)


def test_strategies_reach_both_outcomes() -> None:
    """The inputs are not all refused: the fuzzer also exercises the success paths."""
    for target in ("keystore", "token-response", "inspect"):
        stats, _ = fuzz.run_target(target, 60, seed=7, cli_every=0)
        assert stats.ok > 0, target
        assert stats.documented_errors > 0, target
