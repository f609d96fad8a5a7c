"""A published JWKS (issue 13): publish, read back as a server would, compare, drive rotation.

Against real HTTP servers on 127.0.0.1 serving the published file with a
Cache-Control header (tests/integration/servers.py), with the keystore's own
clock injected so a cache wait of an hour takes no time.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from jwktool import keys
from jwktool.errors import (
    EXIT_ROTATE_CHANGED,
    EXIT_STATUS_JWKS_DRIFT,
    InputError,
    ServerUnreachableError,
)
from jwktool.keystore import KeyStatus, Keystore
from jwktool.publish import (
    compare_published,
    fetch_jwks,
    file_publisher,
    jwks_gate,
    publish_jwks,
)
from jwktool.rotation import rotate_keys

from ..conftest import PRIVATE_MEMBERS, CliInvoke
from .servers import Origin, Request

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


class FileOrigin(Origin):
    """Serves one file (re-read each time) with ``Cache-Control: max-age``; or 503 when down."""

    def __init__(self, path: Path, max_age: int | None = 3600) -> None:
        self.path = path
        self.max_age = max_age
        self.down = False
        self.frozen: bytes | None = None  # serve this instead of the file (stale content)
        super().__init__(self._answer)

    def _answer(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        if self.down:
            return 503, {}, b"down"
        body = self.frozen if self.frozen is not None else self.path.read_bytes()
        headers = {"Content-Type": "application/json"}
        if self.max_age is not None:
            headers["Cache-Control"] = f"public, max-age={self.max_age}"
        return 200, headers, body

    @property
    def jwks_url(self) -> str:
        return self.url + "/.well-known/jwks.json"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "keystore.json"
    keys.generate_key(path, alg="ES256", now=T0)
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    return root / "jwks.json"


@pytest.fixture
def origin(site: Path) -> Iterator[FileOrigin]:
    with FileOrigin(site) as server:
        assert isinstance(server, FileOrigin)
        yield server


def kids_in(path: Path) -> set[str]:
    return {k["kid"] for k in json.loads(path.read_text())["keys"]}


# -- publishing -----------------------------------------------------------------------------


def test_publish_writes_public_keys_only_0644_and_only_on_change(store: Path, site: Path) -> None:
    keys.generate_key(store, alg="ES256", now=T0)  # a pending key too
    first = publish_jwks(store, site)
    assert first.changed and first.path == site
    assert stat.S_IMODE(site.stat().st_mode) == 0o644
    doc = json.loads(site.read_text())
    assert len(doc["keys"]) == 2
    assert all(not (PRIVATE_MEMBERS & set(k)) for k in doc["keys"])
    before = site.stat().st_mtime_ns
    again = publish_jwks(store, site)
    assert not again.changed
    assert site.stat().st_mtime_ns == before
    assert first.cache_control == "public, max-age=3600"


def test_publish_never_replaces_a_file_that_is_not_a_jwks(store: Path, tmp_path: Path) -> None:
    other = tmp_path / "index.html"
    other.write_text("<html>mine</html>")
    with pytest.raises(InputError, match="not a public JWKS"):
        publish_jwks(store, other)
    assert other.read_text() == "<html>mine</html>"


def test_keys_publish_command(cli: CliInvoke, store: Path, site: Path) -> None:
    result = cli("keys", "publish", "--keystore", str(store), str(site), "--cache-max-age", "10m")
    assert result.exit_code == 0, result.stderr
    assert "Cache-Control: public, max-age=600" in result.stderr
    assert kids_in(site) == {k.kid for k in keys.list_keys(store)}
    printed = cli("keys", "publish", "--keystore", str(store), "-")
    assert json.loads(printed.stdout) == json.loads(site.read_text())


# -- reading it back ------------------------------------------------------------------------


def test_fetch_reads_kids_and_max_age(store: Path, site: Path, origin: FileOrigin) -> None:
    publish_jwks(store, site)
    served = fetch_jwks(origin.jwks_url)
    assert served.kids == frozenset(kids_in(site))
    assert served.max_age == 3600
    assert not served.private_members


def test_fetch_of_a_down_endpoint_is_a_clear_error(origin: FileOrigin) -> None:
    origin.down = True
    with pytest.raises(ServerUnreachableError, match="answered HTTP 503"):
        fetch_jwks(origin.jwks_url)


def test_a_published_private_key_is_flagged(store: Path, site: Path, origin: FileOrigin) -> None:
    site.write_text(keys.export_keys(store, private=True))
    drift = compare_published(store, fetch_jwks(origin.jwks_url))
    assert drift.private_members and not drift.ok


def test_status_reports_drift_with_exit_14_and_metrics(
    cli: CliInvoke, store: Path, site: Path, origin: FileOrigin, tmp_path: Path
) -> None:
    publish_jwks(store, site)
    metrics = tmp_path / "jwktool.prom"
    args = ["keys", "status", "--keystore", str(store), "--jwks-url", origin.jwks_url]
    healthy = cli(*args, "--prometheus", str(metrics))
    assert healthy.exit_code == 0, healthy.stdout + healthy.stderr
    assert "jwktool_jwks_missing_keys 0" in metrics.read_text()
    keys.generate_key(store, alg="ES256")  # pending, not published yet
    drifted = cli(*args, "--json")
    assert drifted.exit_code == EXIT_STATUS_JWKS_DRIFT
    report = json.loads(drifted.stdout)
    assert [m["status"] for m in report["jwks"]["missing"]] == ["pending"]


# -- rotation driven by the published JWKS ---------------------------------------------------


def test_a_full_cycle_publishes_waits_for_caches_then_promotes(
    store: Path, site: Path, origin: FileOrigin
) -> None:
    publish = file_publisher(site)
    gate = jwks_gate(origin.jwks_url)  # the URL's max-age (3600 s) is the wait
    old = keys.list_keys(store)[0].kid

    staged = rotate_keys(store, min_age=timedelta(0), publish=publish, gate=gate, now=T0)
    assert [a.action for a in staged.actions] == ["staged"]
    assert staged.publishing and not staged.needs_registration  # published, not pasted
    new = staged.actions[0].kid
    assert new is not None and kids_in(site) == {old, new}

    # The URL serves it, but a server may still hold the old set for an hour.
    soon = rotate_keys(store, publish=publish, gate=jwks_gate(origin.jwks_url), now=T0)
    assert soon.actions == () and "promotion from" in soon.notes[0]
    record = Keystore(store).read().find(new)
    assert record.published is not None

    later = T0 + timedelta(hours=1, minutes=1)
    done = rotate_keys(store, publish=publish, gate=jwks_gate(origin.jwks_url), now=later)
    assert [a.action for a in done.actions] == ["retired", "promoted"]
    assert kids_in(site) == {old, new}  # the retired key stays published for the overlap

    gone = later + timedelta(days=8)
    removed = rotate_keys(store, publish=publish, gate=jwks_gate(origin.jwks_url), now=gone)
    assert [a.action for a in removed.actions] == ["removed"]
    assert kids_in(site) == {new}  # withdrawn only after the overlap


def test_no_promotion_while_the_url_serves_an_old_set(
    store: Path, site: Path, origin: FileOrigin
) -> None:
    publish = file_publisher(site)
    publish_jwks(store, site)
    origin.frozen = site.read_bytes()  # a stale copy: the new key never shows
    rotate_keys(store, min_age=timedelta(0), publish=publish, now=T0)
    for hours in (1, 5, 48, 24 * 30):
        result = rotate_keys(
            store, publish=publish, gate=jwks_gate(origin.jwks_url), now=T0 + timedelta(hours=hours)
        )
        assert result.actions == ()
        assert "does not serve it" in result.notes[0]
    statuses = {k.status for k in keys.list_keys(store)}
    assert statuses == {KeyStatus.ACTIVE, KeyStatus.PENDING}


def test_cache_wait_is_a_floor_under_the_urls_max_age(
    store: Path, site: Path, origin: FileOrigin
) -> None:
    """A server may keep a copy longer than it is told (oidc-provider: 60 s at least)."""
    origin.max_age = 30
    publish = file_publisher(site)
    rotate_keys(store, min_age=timedelta(0), publish=publish, now=T0)
    floor = timedelta(minutes=5)
    rotate_keys(store, publish=publish, gate=jwks_gate(origin.jwks_url, cache_wait=floor), now=T0)
    early = T0 + timedelta(seconds=31)  # past the max-age, not past the floor
    held = rotate_keys(
        store, publish=publish, gate=jwks_gate(origin.jwks_url, cache_wait=floor), now=early
    )
    assert held.actions == () and "300 s" in held.notes[0]
    later = T0 + timedelta(minutes=6)
    done = rotate_keys(
        store, publish=publish, gate=jwks_gate(origin.jwks_url, cache_wait=floor), now=later
    )
    assert [a.action for a in done.actions] == ["retired", "promoted"]


def test_a_key_the_server_refuses_in_the_endpoint_flow_is_not_registration_work(
    store: Path, site: Path, origin: FileOrigin
) -> None:
    from jwktool.errors import ServerRejectedError

    active = next(k.kid for k in keys.list_keys(store) if k.status is KeyStatus.ACTIVE)

    def not_yet(kid: str) -> None:  # the server takes the active key, not the new one yet
        if kid != active:
            raise ServerRejectedError("no key", error="invalid_client", status=400)

    publish = file_publisher(site)
    rotate_keys(store, min_age=timedelta(0), publish=publish, now=T0)
    rotate_keys(store, publish=publish, gate=jwks_gate(origin.jwks_url), now=T0)
    later = T0 + timedelta(hours=2)
    result = rotate_keys(
        store, publish=publish, gate=jwks_gate(origin.jwks_url), verify=not_yet, now=later
    )
    assert result.actions == () and result.waiting == ()
    assert not result.needs_registration
    assert "does not accept it yet" in result.notes[0]


def test_a_run_that_could_not_publish_heals_on_the_next(
    store: Path, site: Path, origin: FileOrigin
) -> None:
    publish_jwks(store, site)
    calls: list[int] = []

    def flaky(target: Keystore) -> bool:
        calls.append(1)
        if len(calls) == 2:  # the publication after the staging fails (a crash, a full disk)
            raise OSError("disk full")
        return publish_jwks(target, site).changed

    with pytest.raises(OSError):
        rotate_keys(store, min_age=timedelta(0), publish=flaky, now=T0)
    pending = [k.kid for k in keys.list_keys(store) if k.status is KeyStatus.PENDING]
    assert len(pending) == 1 and pending[0] not in kids_in(site)
    # The published set still holds the active key: nothing the server uses is gone.
    active = next(k.kid for k in keys.list_keys(store) if k.status is KeyStatus.ACTIVE)
    assert active in kids_in(site)
    result = rotate_keys(store, publish=file_publisher(site), now=T0)
    assert result.published and pending[0] in kids_in(site)


def test_rotate_command_with_publish_needs_no_registration(
    cli: CliInvoke, store: Path, site: Path, origin: FileOrigin
) -> None:
    result = cli(
        "keys", "rotate", "--keystore", str(store), "--min-age", "0s",
        "--publish", str(site), "--jwks-url", origin.jwks_url,
    )  # fmt: skip
    assert result.exit_code == EXIT_ROTATE_CHANGED, result.stdout + result.stderr
    assert "is published: no registration" in result.stdout
    assert len(kids_in(site)) == 2
    assert os.stat(site).st_mode & 0o777 == 0o644


# -- the gate against endpoints that misbehave (tests/integration/jwks_server.py) ------------


def test_the_gate_reads_an_https_endpoint_with_its_ca(
    store: Path, site: Path, tmp_path: Path
) -> None:
    from .jwks_server import JwksServer

    publish = file_publisher(site)
    rotate_keys(store, min_age=timedelta(0), publish=publish, now=T0)
    with JwksServer.with_test_ca(site, tmp_path / "pki", max_age=60) as endpoint:
        assert endpoint.url.startswith("https://") and endpoint.ca_bundle is not None
        with pytest.raises(ServerUnreachableError, match="unknown issuer"):
            rotate_keys(store, publish=publish, gate=jwks_gate(endpoint.url), now=T0)
        gate = jwks_gate(endpoint.url, ca_bundle=str(endpoint.ca_bundle))
        first = rotate_keys(store, publish=publish, gate=gate, now=T0)
        assert first.actions == () and "promotion from" in first.notes[0]
        later = T0 + timedelta(seconds=61)
        gate = jwks_gate(endpoint.url, ca_bundle=str(endpoint.ca_bundle))
        done = rotate_keys(store, publish=publish, gate=gate, now=later)
    assert [a.action for a in done.actions] == ["retired", "promoted"]


@pytest.mark.parametrize("trouble", ["down", "refused", "delayed"])
def test_an_endpoint_in_trouble_promotes_nothing_and_changes_nothing(
    store: Path, site: Path, trouble: str
) -> None:
    from .jwks_server import JwksServer

    publish = file_publisher(site)
    rotate_keys(store, min_age=timedelta(0), publish=publish, now=T0)
    with JwksServer(site, max_age=60) as endpoint:
        rotate_keys(store, publish=publish, gate=jwks_gate(endpoint.url), now=T0)  # seen
        if trouble == "down":
            endpoint.down(503)
        elif trouble == "refused":
            endpoint.down()
        else:
            endpoint.slow(5)
        before = Path(store).read_bytes()
        with pytest.raises(ServerUnreachableError):
            rotate_keys(
                store,
                publish=publish,
                gate=jwks_gate(endpoint.url, timeout=(1.0, 1.0)),
                now=T0 + timedelta(hours=2),
            )
        endpoint.up()
    assert Path(store).read_bytes() == before
    assert {k.status for k in keys.list_keys(store)} == {KeyStatus.ACTIVE, KeyStatus.PENDING}


def test_status_with_an_endpoint_down_writes_its_metrics_then_exits_5(
    cli: CliInvoke, store: Path, site: Path, origin: FileOrigin, tmp_path: Path
) -> None:
    publish_jwks(store, site)
    origin.down = True
    metrics = tmp_path / "jwktool.prom"
    args = ["keys", "status", "--keystore", str(store), "--jwks-url", origin.jwks_url]
    result = cli(*args, "--prometheus", str(metrics))
    assert result.exit_code == 5
    assert "jwktool_jwks_up 0" in metrics.read_text()
    assert "jwktool_key_age_seconds" in metrics.read_text()


# -- what an attacker review found --------------------------------------------------------------


def test_publishing_onto_the_keystore_or_a_private_backup_is_refused(
    store: Path, tmp_path: Path
) -> None:
    before = store.read_bytes()
    with pytest.raises(InputError, match="is the keystore"):
        publish_jwks(store, store)
    backup = tmp_path / "backup.jwks"
    backup.write_text(keys.export_keys(store, private=True))
    with pytest.raises(InputError, match="holds private key members"):
        publish_jwks(store, backup)
    assert store.read_bytes() == before
    assert '"d"' in backup.read_text()


def test_a_fifo_or_a_world_writable_directory_is_refused(store: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        publish_jwks(store, fifo)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(InputError, match="writable by anyone"):
        publish_jwks(store, open_dir / "jwks.json")


def _foreign_jwk(kid: str | None) -> dict[str, object]:
    from cryptography.hazmat.primitives.asymmetric import ec

    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def b64(value: int) -> str:
        import base64

        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk: dict[str, object] = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y)}
    if kid is not None:
        jwk["kid"] = kid
    return jwk


@pytest.mark.parametrize("how", ["no kid", "our kid"])
def test_a_planted_key_is_drift_and_never_passes_the_gate(
    store: Path, site: Path, origin: FileOrigin, how: str
) -> None:
    rotate_keys(store, min_age=timedelta(0), publish=file_publisher(site), now=T0)
    pending = next(k for k in keys.list_keys(store) if k.status is KeyStatus.PENDING)
    doc = json.loads(site.read_text())
    if how == "no kid":
        doc["keys"].append(_foreign_jwk(None))
    else:  # the attacker's material under our pending key's kid
        doc["keys"] = [k for k in doc["keys"] if k["kid"] != pending.kid]
        doc["keys"].append(_foreign_jwk(pending.kid))
    site.write_text(json.dumps(doc))
    drift = compare_published(store, fetch_jwks(origin.jwks_url))
    assert not drift.ok and drift.unknown
    result = rotate_keys(
        store, gate=jwks_gate(origin.jwks_url, cache_wait=timedelta(0)), now=T0 + timedelta(days=1)
    )
    if how == "our kid":
        assert result.actions == () and "does not serve it" in result.notes[0]


def test_a_key_that_disappears_waits_again_from_its_return(
    store: Path, site: Path, origin: FileOrigin
) -> None:
    publish = file_publisher(site)
    rotate_keys(store, min_age=timedelta(0), publish=publish, now=T0)
    full = site.read_bytes()
    rotate_keys(store, gate=jwks_gate(origin.jwks_url), now=T0)  # first seen at T0
    origin.frozen = b'{"keys": []}'  # a stale backend for a while
    rotate_keys(store, gate=jwks_gate(origin.jwks_url), now=T0 + timedelta(minutes=30))
    origin.frozen = full
    back = T0 + timedelta(minutes=70)  # past T0 + max-age, but only just served again
    result = rotate_keys(store, gate=jwks_gate(origin.jwks_url), now=back)
    assert result.actions == () and "promotion from" in result.notes[0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=86400, s-maxage=60", 86400),
        ('no-cache="Set-Cookie", max-age=3600', 3600),
        ("x-no-store-hint, max-age=3600", 3600),
        ("max-age=60, max-age=86400", 86400),
        ("no-store", 0),
        ("public", None),
    ],
)
def test_cache_control_is_read_on_the_cautious_side(header: str, expected: int | None) -> None:
    from jwktool.publish import _cache_seconds

    assert _cache_seconds({"Cache-Control": header}) == expected


def test_a_huge_max_age_is_clamped_not_a_crash(store: Path, site: Path, origin: FileOrigin) -> None:
    origin.max_age = 300_000_000_000
    rotate_keys(store, min_age=timedelta(0), publish=file_publisher(site), now=T0)
    result = rotate_keys(store, gate=jwks_gate(origin.jwks_url), now=T0)
    assert result.actions == () and "604800 s" in result.notes[0]
