"""Reliability and security figures for jwktool (GitHub issue 6).

Run ``python stress/run.py --quick`` (about a minute) or ``python stress/run.py``
(the full run, about ten minutes; it rewrites docs/reliability.md). The short
versions of every part also run in the normal test suite (tests/reliability).

Parts:

* :mod:`stress.fuzz` -- hostile input to every parser jwktool owns or feeds
  (Hypothesis, and atheris when it is installed), plus the size limits;
* :mod:`stress.faults` with :mod:`stress.faultproxy` -- a fault-injecting TCP
  proxy between TokenClient and the real test authorization server;
* :mod:`stress.crashes` -- processes rotating, generating and signing on one
  keystore while some are killed with SIGKILL;
* :mod:`stress.secretscan` -- every command's error paths, with all output and
  DEBUG logs searched for key material, assertions and tokens.
"""
