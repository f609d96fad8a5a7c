"""The per-user token cache (jwktool/tokencache.py): keys, freshness, file safety."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jwktool.cli._common import exit_code_for
from jwktool.errors import EXIT_STATE_FILE, StateFileError
from jwktool.tokencache import TokenCache, cache_key, default_cache_path

NOW = 1_700_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "tokens.json"


def entry(
    token: str = "tok", *, expires_at: float = NOW + 3600, refresh_at: float = NOW + 3240
) -> dict[str, Any]:
    return {"access_token": token, "expires_at": expires_at, "refresh_at": refresh_at}


# -- cache keys ------------------------------------------------------------------------


BASE = ("https://as.example/op", "client", "read write", "thumb", None)


@pytest.mark.parametrize(
    "changed",
    [
        ("https://other.example/op", "client", "read write", "thumb", None),
        ("https://as.example/op", "client2", "read write", "thumb", None),
        ("https://as.example/op", "client", "read", "thumb", None),
        ("https://as.example/op", "client", "read write", "thumb2", None),
        ("https://as.example/op", "client", "read write", "thumb", "https://api.example"),
    ],
    ids=["server", "client", "scope", "key", "resource"],
)
def test_every_part_of_the_key_matters(changed: tuple[Any, ...]) -> None:
    assert cache_key(*changed) != cache_key(*BASE)


def test_scope_order_and_spacing_do_not_matter() -> None:
    assert cache_key("s", "c", "read write", "t") == cache_key("s", "c", "  write   read ", "t")
    assert cache_key("s", "c", None, "t") == cache_key("s", "c", "", "t")


def test_parts_cannot_run_into_each_other() -> None:
    assert cache_key("ab", "c", None, "t") != cache_key("a", "bc", None, "t")


def test_the_key_is_a_sha256_hex_digest_without_the_inputs() -> None:
    key = cache_key("https://as.example/op", "my-client", "read", "thumbprint")
    assert len(key) == 64 and int(key, 16) >= 0
    assert "my-client" not in key


# -- where the cache lives ---------------------------------------------------------------


def test_default_path_is_under_xdg_cache_home(home: Path) -> None:
    assert default_cache_path() == home / ".cache" / "jwktool" / "tokens.json"
    assert TokenCache().path == default_cache_path()


def test_default_path_falls_back_to_dot_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_path() == home / ".cache" / "jwktool" / "tokens.json"


def test_jwktool_token_cache_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWKTOOL_TOKEN_CACHE", str(tmp_path / "mine.json"))
    assert default_cache_path() == tmp_path / "mine.json"


# -- get and put -------------------------------------------------------------------------


def test_put_then_get(path: Path) -> None:
    cache = TokenCache(path)
    cache.put("k", entry("abc"), now=NOW)
    got = cache.get("k", now=NOW + 10)
    assert got is not None and got["access_token"] == "abc"
    assert cache.get("other", now=NOW) is None
    assert TokenCache(path).get("k", now=NOW) == got  # a new process sees it


def test_an_entry_is_not_served_from_its_refresh_time_on(path: Path) -> None:
    cache = TokenCache(path)
    cache.put("k", entry(refresh_at=NOW + 100), now=NOW)
    assert cache.get("k", now=NOW + 99.9) is not None
    assert cache.get("k", now=NOW + 100) is None
    assert cache.get("k", now=NOW + 5000) is None


def test_get_without_now_uses_the_clock(path: Path) -> None:
    import time

    cache = TokenCache(path)
    now = time.time()
    cache.put("fresh", entry(expires_at=now + 3600, refresh_at=now + 3000))
    cache.put("stale", entry(expires_at=now + 3600, refresh_at=now - 1))
    assert cache.get("fresh") is not None
    assert cache.get("stale") is None


def test_expired_entries_are_dropped_on_write(path: Path) -> None:
    cache = TokenCache(path)
    cache.put("old", entry(expires_at=NOW + 10, refresh_at=NOW + 5), now=NOW)
    cache.put("new", entry(), now=NOW + 20)
    tokens = json.loads(path.read_text(encoding="utf-8"))["tokens"]
    assert set(tokens) == {"new"}


def test_put_replaces_an_entry(path: Path) -> None:
    cache = TokenCache(path)
    cache.put("k", entry("one"), now=NOW)
    cache.put("k", entry("two"), now=NOW)
    assert cache.get("k", now=NOW)["access_token"] == "two"  # type: ignore[index]


@pytest.mark.parametrize(
    "bad",
    [
        {"expires_at": NOW, "refresh_at": NOW},
        {"access_token": 1, "expires_at": NOW, "refresh_at": NOW},
        {"access_token": "t", "expires_at": "soon", "refresh_at": NOW},
        {"access_token": "t", "expires_at": NOW},
    ],
)
def test_put_refuses_an_incomplete_entry(path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="access_token"):
        TokenCache(path).put("k", bad, now=NOW)
    assert not path.exists()


def test_clear(path: Path) -> None:
    cache = TokenCache(path)
    cache.clear()
    assert not path.exists()  # nothing to clear: no file made
    cache.put("k", entry(), now=NOW)
    cache.clear()
    assert cache.get("k", now=NOW) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_repr_shows_the_path_not_the_tokens(path: Path) -> None:
    cache = TokenCache(path)
    cache.put("k", entry("secret-token-value"), now=NOW)
    assert str(path) in repr(cache)
    assert "secret-token-value" not in repr(cache)


# -- file safety -------------------------------------------------------------------------


def test_the_file_is_0600_in_a_0700_directory(path: Path) -> None:
    TokenCache(path).put("k", entry(), now=NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644], ids=oct)
def test_a_file_others_can_read_is_refused(path: Path, mode: int) -> None:
    cache = TokenCache(path)
    cache.put("k", entry("s3cr3t-access-token"), now=NOW)
    path.chmod(mode)
    with pytest.raises(StateFileError) as info:
        cache.get("k", now=NOW)
    assert exit_code_for(info.value) == EXIT_STATE_FILE
    assert "chmod 600" in info.value.message and "\n" not in info.value.message
    assert "s3cr3t-access-token" not in info.value.message
    with pytest.raises(StateFileError):
        cache.put("k2", entry(), now=NOW)
    assert stat.S_IMODE(path.stat().st_mode) == mode  # left as found


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"null",
        b"[1, 2]",
        b'{"version": 2, "tokens": {}}',
        b'{"version": 1, "tokens": []}',
    ],
)
def test_a_file_that_is_not_a_cache_is_ignored_and_never_replaced(
    path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache path may name something else (a keystore, by mistake): never overwrite it."""
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(content)
    path.chmod(0o600)
    cache = TokenCache(path)
    assert cache.get("k", now=NOW) is None
    cache.put("k", entry("fixed"), now=NOW)
    cache.clear()
    assert path.read_bytes() == content
    assert "is not a jwktool token cache" in caplog.text


def test_an_empty_file_becomes_the_cache(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(b"")
    path.chmod(0o600)
    cache = TokenCache(path)
    assert cache.get("k", now=NOW) is None
    cache.put("k", entry("fixed"), now=NOW)
    assert cache.get("k", now=NOW)["access_token"] == "fixed"  # type: ignore[index]


def test_malformed_entries_are_ignored_and_good_ones_kept(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True)
    doc = {
        "version": 1,
        "tokens": {"good": entry("good"), "bad": {"access_token": 5}, "worse": "x"},
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    path.chmod(0o600)
    cache = TokenCache(path)
    assert cache.get("good", now=NOW)["access_token"] == "good"  # type: ignore[index]
    assert cache.get("bad", now=NOW) is None
    assert cache.get("worse", now=NOW) is None


def test_an_oversized_file_is_ignored_and_left_alone(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(b" " * (1024 * 1024 + 1))
    path.chmod(0o600)
    cache = TokenCache(path)
    assert cache.get("k", now=NOW) is None
    cache.put("k", entry(), now=NOW)
    assert path.stat().st_size == 1024 * 1024 + 1


def test_concurrent_writers_lose_no_entry(path: Path) -> None:
    """Four processes each store 25 entries at once; all 100 are there afterwards."""
    code = (
        "import sys\n"
        "from jwktool.tokencache import TokenCache\n"
        "cache = TokenCache(sys.argv[1])\n"
        "for i in range(25):\n"
        "    cache.put(f'{sys.argv[2]}-{i}', {'access_token': 't', 'expires_at': 4e9,"
        " 'refresh_at': 4e9})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"w{n}"]) for n in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    tokens = json.loads(path.read_text(encoding="utf-8"))["tokens"]
    assert len(tokens) == 100
    assert not list(path.parent.glob("*.tmp"))
