"""What the stress parts have found so far, written down.

Every problem a run reports is matched against these findings. A problem that
matches none is *new*: ``stress/run.py`` says so and exits non-zero, and the
short tests in tests/reliability fail, until it is fixed or written down here
(and in docs/reliability.md, whose prose lives in stress/reliability.md.in).

Each finding names the test in tests/reliability that reproduces it. While a
finding is open its test is marked ``xfail(strict=True)``; once fixed, the
marker goes, the test guards against the bug coming back, and the finding's
``fixed`` names the commit. A problem that matches a *fixed* finding is a
regression: it counts as new.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import Problem


@dataclass(frozen=True)
class Finding:
    """A known problem: an id, what it is, and which problems it explains."""

    id: str
    title: str
    pattern: str  # a regular expression searched in "part/target kind: detail"
    test: str
    fixed: str = ""  # the commit that fixed it; "" while open

    def explains(self, problem: Problem) -> bool:
        text = f"{problem.part}/{problem.target} {problem.kind}: {problem.detail}"
        return re.search(self.pattern, text) is not None


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "R1",
        "Deeply nested JSON or TOML crashes with RecursionError (internal error, exit 1)",
        r"RecursionError",
        "test_findings.py::test_deep_nesting_is_a_documented_error_*",
        fixed="c20efd4",
    ),
    Finding(
        "R2",
        "A keystore number with more than 4300 digits crashes with ValueError",
        r"fuzz/keystore .*ValueError at decoder\.py",
        "test_findings.py::test_keystore_with_a_huge_number_is_corrupt",
        fixed="c20efd4",
    ),
    Finding(
        "R3",
        "A non-string kty crashes with TypeError (keystore private member, key import)",
        r"TypeError at _jwk\.py",
        "test_findings.py::test_non_string_kty_is_a_documented_error_*",
        fixed="c20efd4",
    ),
    Finding(
        "R4",
        "Private members in the keystore that do not form a key crash sign/export/token "
        "with ValueError",
        r"ValueError at (_jwk|keys|signer|ed25519|rsa|ec)\.py",
        "test_findings.py::test_altered_private_key_is_a_documented_error",
        fixed="c20efd4",
    ),
    Finding(
        "R12",
        "A damaged Ed25519 private key in the keystore signs, silently, with the wrong key",
        r"signed an assertion that does not verify: plain keystore, EdDSA",
        "test_findings.py::test_a_damaged_ed25519_key_is_refused",
        fixed="c20efd4",
    ),
    Finding(
        "R13",
        "In an encrypted keystore the public members are not bound to the sealed private key",
        r"signed an assertion that does not verify: encrypted keystore",
        "test_findings.py::test_encrypted_keystore_public_members_are_checked",
        fixed="c20efd4",
    ),
    Finding(
        "R14",
        "An access_token with characters outside VSCHAR is accepted; 'jwktool token' "
        "crashes on one it cannot print, and prints a newline in one as two lines",
        r"access token a header cannot carry|UnicodeEncodeError",
        "test_findings.py::test_an_access_token_outside_vschar_is_refused",
        fixed="c20efd4",
    ),
    Finding(
        "R5",
        "'inspect' of a file that is not UTF-8 crashes with UnicodeDecodeError",
        r"UnicodeDecodeError",
        "test_findings.py::test_inspect_of_non_utf8_bytes_is_a_documented_error",
        fixed="c20efd4",
    ),
    Finding(
        "R6",
        "'inspect' says a signature verifies when the JWT holds characters outside base64url",
        r"inspect accepts what PyJWT rejects",
        "test_findings.py::test_inspect_refuses_characters_outside_base64url",
        fixed="c20efd4",
    ),
    Finding(
        "R7",
        "A token response cut short (body or headers) is not retried and is misreported",
        r"faults/truncated( body| headers|, then reset)",
        "test_findings.py::test_a_truncated_token_response_is_retried",
        fixed="c20efd4",
    ),
    Finding(
        "R8",
        "A TLS connection cut during the handshake is reported as a certificate "
        "verification failure and not retried",
        r"faults/TLS: stream cut short",
        "test_findings.py::test_a_tls_handshake_cut_short_is_retried",
        fixed="c20efd4",
    ),
    Finding(
        "R9",
        "No overall deadline: a server dripping bytes holds a caller far beyond the timeout",
        r"slow drip held a caller",
        "test_findings.py::test_a_slow_drip_is_cut_off",
        fixed="c20efd4",
    ),
    Finding(
        "R10",
        "A configuration file is read whole before its size is checked",
        r"limits/100 MB configuration file",
        "test_findings.py::test_a_huge_config_file_is_not_read_into_memory",
        fixed="c20efd4",
    ),
    Finding(
        "R11",
        "A token cache entry with a non-finite expires_at crashes 'jwktool token --json'",
        r"OverflowError at exchanger\.py|ValueError at exchanger\.py",
        "test_findings.py::test_a_non_finite_token_cache_entry_is_ignored",
        fixed="c20efd4",
    ),
)


# Found by the run of the fixed code (c20efd4): open, fixes proposed.
FINDINGS += (
    Finding(
        "R15",
        "A URL that urlsplit cannot parse (an unclosed '[') crashes with ValueError: "
        "--token-endpoint, --issuer, or a discovered token_endpoint",
        r"ValueError at parse\.py",
        "test_findings.py::test_an_unparseable_url_is_a_documented_error_*",
        fixed="this commit",
    ),
    Finding(
        "R16",
        "'inspect --jwks' with a tiny RSA key and alg PS256 crashes with ValueError",
        r"ValueError at inspection\.py",
        "test_findings.py::test_inspect_with_a_tiny_rsa_key_in_the_jwks",
        fixed="this commit",
    ),
)


def explain(problem: Problem) -> Finding | None:
    """The finding that explains ``problem``, if any."""
    return next((f for f in FINDINGS if f.explains(problem)), None)


def unexplained(problems: list[Problem]) -> list[Problem]:
    """The problems no open finding explains: new ones, and regressions of fixed ones."""
    out = []
    for problem in problems:
        finding = explain(problem)
        if finding is None or finding.fixed:
            out.append(problem)
    return out
