"""The public API: everything in jwktool.__all__ resolves, lazily, and the error tree is whole."""

from __future__ import annotations

import subprocess
import sys

import jwktool
from jwktool import errors


def test_every_name_in_all_resolves() -> None:
    for name in jwktool.__all__:
        assert getattr(jwktool, name) is not None, name
    assert sorted(dir(jwktool)) == sorted(jwktool.__all__)


def test_every_error_is_exported_and_derives_from_the_base() -> None:
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    for cls in classes:
        assert issubclass(cls, errors.JwktoolError), cls
        assert cls.__name__ in jwktool.__all__, cls.__name__
        assert cls.__doc__, cls.__name__


def test_import_jwktool_is_light() -> None:
    code = "import sys, jwktool; print('requests' in sys.modules, 'jwcrypto' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_signing_does_not_import_requests_or_jwcrypto(tmp_path: object) -> None:
    code = (
        "import sys, tempfile, os\n"
        "from jwktool.keys import generate_key\n"
        "p = os.path.join(tempfile.mkdtemp(), 'k.json')\n"
        "generate_key(p, alg='ES256')\n"
        "from jwktool.signer import Signer\n"
        "Signer(p, 'c', 'https://as.example/op').sign()\n"
        "print('requests' in sys.modules, 'jwcrypto' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_alg_names_the_algorithms_of_the_jwa_table_and_the_command_line() -> None:
    from typing import get_args

    from jwktool import _jwa, keys
    from jwktool.cli import _common

    names = get_args(jwktool.Alg)
    assert names == tuple(_jwa.ALGORITHMS) == keys.ALGORITHMS == _common.ALGORITHMS
    assert keys.DEFAULT_ALG in names


def test_the_token_client_and_file_cache_do_not_import_redis() -> None:
    """redis is the [redis] extra: only a redis:// cache may import it."""
    code = (
        "import sys, jwktool, jwktool.exchanger, jwktool.tokencache\n"
        "jwktool.tokencache.open_cache(None)\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_import_jwktool_and_the_sync_client_do_not_import_httpx() -> None:
    """httpx is the [httpx] extra: only the asyncio client and httpx auth import it."""
    code = (
        "import sys, jwktool, jwktool.exchanger, jwktool.signer\n"
        "print('httpx' in sys.modules)\n"
        "import jwktool.asyncclient\n"
        "print('httpx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
