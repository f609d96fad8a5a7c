"""Short versions of the reliability and security runs in stress/ (GitHub issue 6).

The full runs: ``python stress/run.py`` (rewrites docs/reliability.md); longer
versions of these tests: ``pytest tests/reliability --run-slow``.
"""
