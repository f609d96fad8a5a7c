"""No key material, passphrase, assertion or token in any error path's output or logs."""

from __future__ import annotations

import pytest

from stress import secretscan
from stress.common import PartResult
from stress.findings import unexplained


@pytest.fixture(scope="module")
def scan() -> PartResult:
    return secretscan.run_part()


def test_no_secret_in_any_error_output_or_log(scan: PartResult) -> None:
    leaks = [p for p in scan.problems if p.kind == "secret in the output"]
    assert not leaks, "\n".join(p.line() for p in leaks)
    rows = {row.figure: row.value for row in scan.rows}
    assert rows["secrets found in output or logs"] == "0"
    assert int(rows["commands run in their error paths"].split()[0]) >= 60


def test_every_error_path_is_a_documented_error_or_a_known_finding(scan: PartResult) -> None:
    new = unexplained(scan.problems)
    assert not new, "\n".join(p.line() for p in new)


def test_the_search_finds_a_secret_when_there_is_one() -> None:
    """The scanner is not blind: whole values and 24-character pieces are found."""
    secrets = secretscan.Secrets()
    value = "A" * 10 + "b1C2d3E4f5G6h7I8j9K0l1M2n3O4p5Q6r7S8"
    secrets.add("a private member", value)
    secrets.add_assertion(
        "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJjIn0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
    )
    assert secrets.find(f"error: {value}") == ["a private member"]
    assert secrets.find("error: ..." + value[5:29] + "...") == ["a private member"]
    assert secrets.find("c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWdu") == ["a client assertion's signature"]
    assert secrets.find("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJjIn0") == []  # header, claims: public
    assert secrets.find("nothing secret here") == []
