"""A real SoftHSM2 token, made by the tests in a temporary directory.

Needs Debian's ``softhsm2`` package (``.ci/run`` installs it) and the
``python-pkcs11`` package (the ``[test]`` extra). Without them these tests
are skipped and say why; in CI (``$CI`` set) they fail instead.

A PKCS#11 module is loaded once per process and reads its configuration
then, so the token (and its configuration) is made once per test session;
each test starts with the token emptied of objects and its own states file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Where distributions put SoftHSM2's PKCS#11 module.
MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
)
USER_PIN = "246810"
SO_PIN = "13579111"
LABEL = "jwktool-test"


@dataclass(frozen=True)
class SoftHsm:
    """An initialised token: its label, module, a PIN file, and a jwktool URI for it."""

    label: str
    module: str
    pin_file: Path
    metadata: Path

    @property
    def uri(self) -> str:
        return f"pkcs11:token={self.label}"


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI installs it: see .ci/run)")
    pytest.skip(f"{why}; the PKCS#11 tests need a real SoftHSM2 token")


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One SoftHSM2 token for the session: (module path, PIN file)."""
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        _missing("python-pkcs11 is not installed")
    util = shutil.which("softhsm2-util")
    found = next((m for m in MODULES if Path(m).is_file()), None)
    if util is None or found is None:
        _missing("SoftHSM2 (Debian's softhsm2 package) is not installed")
    assert util is not None and found is not None
    module = os.path.realpath(found)  # the file jwktool loads: one library per process
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read when the module is first loaded
    subprocess.run(
        [util, "--init-token", "--free", "--label", LABEL, "--pin", USER_PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
    )
    pin_file = root / "pin"
    pin_file.write_text(USER_PIN + "\n")
    pin_file.chmod(0o600)
    return module, pin_file


@pytest.fixture
def softhsm(softhsm_token: tuple[str, Path], tmp_path: Path) -> Iterator[SoftHsm]:
    """The session's token, emptied of objects, with a states file of this test's own."""
    import pkcs11

    module, pin_file = softhsm_token
    token = pkcs11.lib(module).get_token(token_label=LABEL)
    try:
        session = token.open(user_pin=USER_PIN, rw=True)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        session = token.open(rw=True)
    with session:
        for obj in list(session.get_objects()):
            obj.destroy()
    yield SoftHsm(LABEL, module, pin_file, tmp_path / "hsm-states.json")


from ..integration.conftest import auth_server as auth_server  # noqa: E402 - the local server
