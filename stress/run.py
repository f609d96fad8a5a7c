#!/usr/bin/env python3
"""Reliability and security figures for jwktool (GitHub issue 6).

    python stress/run.py            # the full run (~10 min): rewrites docs/reliability.md
    python stress/run.py --quick    # about a minute and a half; prints, writes nothing
    python stress/run.py --quick --parts fuzz,limits --output /tmp/r.md

Parts: fuzz (hostile input, Hypothesis and atheris), limits (100 MB inputs),
faults (a fault-injecting proxy before the token endpoint), crashes (processes
killed with SIGKILL on a shared keystore), secrets (error paths searched for
key material, assertions and tokens).

Every problem found is matched against stress/findings.py. The exit code is 0
when every problem is explained there, 1 when a run found something new.
Needs the test extras (pip install -e '.[test]'); atheris is used if installed.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository importable and keep stress/ itself
    # off sys.path (its module names must not shadow anything).
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from stress.common import ROOT, PartResult, Problem
from stress.findings import FINDINGS, explain, unexplained

PARTS = ("fuzz", "limits", "faults", "crashes", "secrets")


@dataclass(frozen=True)
class Plan:
    """How much of each part to run."""

    fuzz: dict[str, int]  # Hypothesis inputs per target
    atheris: int  # atheris inputs per target (0: none)
    workers: int
    seconds: float
    encrypted_seconds: float
    random_calls: int


QUICK = Plan(
    fuzz={
        "keystore": 150,
        "key-import": 100,
        "token-response": 150,
        "discovery": 150,
        "inspect": 300,
        "token-cache": 100,
        "config": 150,
    },
    atheris=0,
    workers=3,
    seconds=8.0,
    encrypted_seconds=0.0,
    random_calls=20,
)
FULL = Plan(
    fuzz={
        "keystore": 3000,
        "key-import": 1500,
        "token-response": 3000,
        "discovery": 3000,
        "inspect": 6000,
        "token-cache": 2000,
        "config": 3000,
    },
    atheris=20000,
    workers=4,
    seconds=90.0,
    encrypted_seconds=45.0,
    random_calls=300,
)


def run(parts: list[str], *, full: bool, seed: int, atheris_runs: int | None) -> list[PartResult]:
    """Run the parts; print each one's figures as it finishes."""
    plan = FULL if full else QUICK
    results: list[PartResult] = []
    for part in parts:
        started = time.monotonic()
        print(f"== {part} ...", flush=True)
        if part == "fuzz":
            from stress import fuzz

            runs = plan.atheris if atheris_runs is None else atheris_runs
            result = fuzz.run_part(plan.fuzz, seed=seed, atheris_runs=runs)
        elif part == "limits":
            from stress import limits

            result = limits.run_part()
        elif part == "faults":
            from stress import faults

            result = faults.run_part(full=full, seed=seed, random_calls=plan.random_calls)
        elif part == "crashes":
            from stress import crashes

            result = crashes.run_part(
                workers=plan.workers,
                seconds=plan.seconds,
                seed=seed,
                encrypted_seconds=plan.encrypted_seconds,
            )
        elif part == "secrets":
            from stress import secretscan

            result = secretscan.run_part()
        else:
            raise SystemExit(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
        result.seconds = time.monotonic() - started
        results.append(result)
        for row in result.rows:
            print(f"   {row.figure}: {row.value}" + (f" [{row.check}]" if row.check else ""))
        for problem in result.problems:
            print(f"   problem ({_label(problem, markdown=False)}): {problem.line()}")
        print(f"   ({result.seconds:.0f} s)", flush=True)
    return results


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def figures_table(results: list[PartResult]) -> str:
    lines = ["| part | figure | value | check |", "|---|---|---|---|"]
    for result in results:
        for row in result.rows:
            lines.append(
                f"| {row.part} | {_cell(row.figure)} | {_cell(row.value)} | {_cell(row.check)} |"
            )
    return "\n".join(lines)


def _label(problem: Problem, *, markdown: bool = True) -> str:
    finding = explain(problem)
    if finding is None:
        return "**NEW**" if markdown else "NEW"
    if finding.fixed:
        text = f"REGRESSION of {finding.id} (fixed in {finding.fixed})"
        return f"**{text}**" if markdown else text
    return finding.id


def problems_table(problems: list[Problem]) -> str:
    if not problems:
        return "None: every check passed."
    lines = ["| finding | where | what | count |", "|---|---|---|---|"]
    for p in problems:
        label = _label(p)
        lines.append(
            f"| {label} | {_cell(p.part + '/' + p.target)} | "
            f"{_cell(p.kind + ': ' + p.detail)} | {p.count} |"
        )
    return "\n".join(lines)


def environment(full: bool, seed: int, seconds: float, parts: list[str]) -> str:
    from jwktool import __version__

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "jwktool") else ""
    versions = []
    for name in ("hypothesis", "atheris", "cryptography", "requests", "authlib"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:
            versions.append(f"{name} not installed")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"`python stress/run.py{'' if full else ' --quick'} --seed {seed}"
        f"{' --parts ' + ','.join(parts) if parts != list(PARTS) else ''}` on {when}: "
        f"jwktool {__version__} at commit {git('rev-parse', '--short', 'HEAD')}{dirty}, "
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{_cpus()} CPUs; {', '.join(versions)}. Took {seconds / 60:.1f} minutes."
    )


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def render(results: list[PartResult], env_line: str, template: Path) -> str:
    problems = [p for r in results for p in r.problems]
    findings = "\n".join(
        f"| {f.id} | {f.title} | "
        + (f"fixed in {f.fixed}" if f.fixed else "open, fix proposed")
        + f" | `tests/reliability/{f.test}` |"
        for f in FINDINGS
    )
    text = template.read_text(encoding="utf-8")
    for name, value in (
        ("{{run}}", env_line),
        ("{{figures}}", figures_table(results)),
        ("{{problems}}", problems_table(problems)),
        ("{{findings}}", "| id | finding | status | test |\n|---|---|---|---|\n" + findings),
    ):
        text = text.replace(name, value)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short runs (about 90 s)")
    mode.add_argument("--full", action="store_true", help="the full run (default)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--seed", type=int, default=20251128, help="random seed")
    parser.add_argument("--atheris-runs", type=int, default=None, help="inputs per target")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--output", type=Path, default=None, help="write the report here")
    out.add_argument("--no-write", action="store_true", help="write no report")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    full = not args.quick
    started = time.monotonic()
    results = run(parts, full=full, seed=args.seed, atheris_runs=args.atheris_runs)
    seconds = time.monotonic() - started
    env_line = environment(full, args.seed, seconds, parts)
    output = args.output
    if output is None and full and not args.no_write:
        output = ROOT / "docs" / "reliability.md"
    if output is not None and not args.no_write:
        output.write_text(
            render(results, env_line, ROOT / "stress" / "reliability.md.in"), encoding="utf-8"
        )
        print(f"wrote {output}")
    new = unexplained([p for r in results for p in r.problems])
    print(env_line)
    if new:
        print(f"{len(new)} NEW problem(s) or regression(s), see stress/findings.py:")
        for p in new:
            print("  " + p.line())
        return 1
    print("no new problem and no regression (stress/findings.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
