"""``jwktool keys status`` (exit 12/13, --json, --prometheus), ``completion`` and ``--version``."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jwktool import keys
from jwktool._version import __version__
from jwktool.errors import (
    EXIT_INPUT,
    EXIT_KEYSTORE,
    EXIT_OK,
    EXIT_STATUS_ACTIVE_OLD,
    EXIT_STATUS_PENDING_OLD,
)

from ..conftest import CliInvoke, RunCli, assert_one_line_error

DAY = 86400


def ago(days: float) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=days)


def make_store(path: Path, *, active_days: float = 1, pending_days: float | None = None) -> Path:
    keys.generate_key(path, alg="ES256", now=ago(active_days))
    if pending_days is not None:
        keys.generate_key(path, alg="ES256", now=ago(pending_days))
    return path


def status(cli: CliInvoke, store: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = cli("keys", "status", "--keystore", str(store), "--json", *extra)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.stderr
    return result.exit_code, json.loads(result.stdout)


# -- a strict reader of the Prometheus text exposition format (version 0.0.4) -------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>(?:{_LABEL})(?:,{_LABEL})*,?)?\}})?"
    r" (?P<value>\S+)(?: (?P<ts>-?\d+))?$"
)
_ONE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        raise AssertionError(f"not a Prometheus value: {text!r}")
    return float(text)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text)


def parse_prometheus(text: str) -> dict[str, dict[str, Any]]:
    """Parse ``text`` strictly; return {family: {type, help, samples: [(labels, value)]}}.

    Checks: a final newline; HELP/TYPE at most once per family and TYPE
    before its samples; a family's samples contiguous; valid names, label
    syntax and escapes, values; no duplicate series.
    """
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, dict[str, Any]] = {}
    seen_series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    closed: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(_NAME, name), where
                family = families.setdefault(name, {"type": None, "help": None, "samples": []})
                key = parts[1].lower()
                assert family[key] is None, f"second {parts[1]} for {name}: {where}"
                assert not family["samples"], f"{parts[1]} after samples: {where}"
                value = parts[3] if len(parts) == 4 else ""
                if key == "type":
                    assert value in _TYPES, where
                family[key] = value
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample: {where}"
        name = match.group("name")
        assert name in families and families[name]["type"], f"sample before its TYPE: {where}"
        assert name not in closed, f"samples of {name} are not contiguous: {where}"
        if current is not None and current != name:
            closed.add(current)
        current = name
        labels = tuple(
            (k, _unescape(v)) for k, v in _ONE_LABEL.findall(match.group("labels") or "")
        )
        assert len({k for k, _ in labels}) == len(labels), f"repeated label: {where}"
        assert (name, tuple(sorted(labels))) not in seen_series, f"duplicate series: {where}"
        seen_series.add((name, tuple(sorted(labels))))
        families[name]["samples"].append((dict(labels), _value(match.group("value"))))
    return families


def test_the_prometheus_reader_is_strict() -> None:
    good = '# HELP a x\n# TYPE a gauge\na{k="v\\"q"} 1\na{k="w"} 2.5e3\n'
    assert parse_prometheus(good)["a"]["samples"][0] == ({"k": 'v"q'}, 1.0)
    for bad in (
        "a 1\n",  # no TYPE
        "# TYPE a gauge\na 1",  # no final newline
        "# TYPE a gauge\na one\n",
        '# TYPE a gauge\na{k="v} 1\n',
        "# TYPE a gauge\na 1\na 2\n",
        '# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x="y"} 1\n',
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",
        "# TYPE a-b gauge\n",
    ):
        with pytest.raises(AssertionError):
            parse_prometheus(bad)


def gauge(families: dict[str, dict[str, Any]], name: str) -> float:
    family = families[name]
    assert family["type"] == "gauge" and family["help"]
    ((labels, value),) = family["samples"]
    assert labels == {}
    return float(value)


# -- keys status ---------------------------------------------------------------------------


def test_status_healthy(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json", active_days=10, pending_days=2)
    code, report = status(cli, store)
    assert code == EXIT_OK
    assert report["ok"] is True
    assert report["active_too_old"] is False and report["pending_too_long"] is False
    active = keys.list_keys(store)[0]
    assert report["active_kid"] == active.kid
    assert abs(report["active_age_seconds"] - 10 * DAY) < 120
    assert abs(report["oldest_pending_age_seconds"] - 2 * DAY) < 120
    assert report["max_age_seconds"] == 97 * DAY
    assert report["max_pending_age_seconds"] == 14 * DAY
    assert [k["status"] for k in report["keys"]] == ["active", "pending"]
    text = cli("keys", "status", "--keystore", str(store))
    assert text.exit_code == EXIT_OK
    assert text.stdout.splitlines()[0].startswith(f"active   {active.kid} (ES256), 10d old")
    assert text.stdout.splitlines()[-1] == "ok"


def test_status_exit_12_when_the_active_key_is_too_old(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json", active_days=100)
    code, report = status(cli, store)
    assert code == EXIT_STATUS_ACTIVE_OLD
    assert report["ok"] is False and report["active_too_old"] is True
    text = cli("keys", "status", "--keystore", str(store))
    assert text.exit_code == EXIT_STATUS_ACTIVE_OLD
    assert "TOO OLD" in text.stdout and "attention needed" in text.stdout
    assert status(cli, store, "--max-age", "101d")[0] == EXIT_OK
    assert status(cli, store, "--max-age", "99d")[0] == EXIT_STATUS_ACTIVE_OLD


def test_status_exit_13_when_a_pending_key_waits_too_long(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json", active_days=30, pending_days=20)
    code, report = status(cli, store)
    assert code == EXIT_STATUS_PENDING_OLD
    assert report["pending_too_long"] is True and report["active_too_old"] is False
    text = cli("keys", "status", "--keystore", str(store))
    assert "WAITING TOO LONG" in text.stdout
    assert status(cli, store, "--max-pending-age", "3w")[0] == EXIT_OK
    assert status(cli, store, "--max-pending-age", "19d")[0] == EXIT_STATUS_PENDING_OLD


def test_status_both_problems_exit_13(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json", active_days=120, pending_days=30)
    code, report = status(cli, store)
    assert report["active_too_old"] is True and report["pending_too_long"] is True
    assert code == EXIT_STATUS_PENDING_OLD


def test_status_without_an_active_key_exits_3(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json")
    doc = json.loads(store.read_text(encoding="utf-8"))
    for key in doc["keys"]:
        key["status"], key["activated"] = "pending", None
    store.write_text(json.dumps(doc), encoding="utf-8")
    result = cli("keys", "status", "--keystore", str(store))
    assert result.exit_code == EXIT_KEYSTORE
    assert_one_line_error(result.stderr, contains="no active key")


def test_status_of_a_missing_keystore_exits_3(cli: CliInvoke, tmp_path: Path) -> None:
    result = cli("keys", "status", "--keystore", str(tmp_path / "missing.json"))
    assert result.exit_code == EXIT_KEYSTORE
    assert_one_line_error(result.stderr)


def test_status_bad_duration_is_a_usage_error(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json")
    result = cli("keys", "status", "--keystore", str(store), "--max-age", "3 months")
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="duration")


# -- keys status --prometheus ------------------------------------------------------------


def test_prometheus_file_is_valid_exposition_format(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json", active_days=10, pending_days=2)
    metrics = tmp_path / "textfile" / "jwktool.prom"
    metrics.parent.mkdir()
    code, report = status(cli, store, "--prometheus", str(metrics))
    assert code == EXIT_OK
    families = parse_prometheus(metrics.read_text(encoding="utf-8"))
    assert set(families) == {
        "jwktool_key_age_seconds",
        "jwktool_active_key_age_seconds",
        "jwktool_pending_keys",
        "jwktool_oldest_pending_key_age_seconds",
        "jwktool_rotation_ok",
        "jwktool_status_timestamp_seconds",
    }
    assert gauge(families, "jwktool_rotation_ok") == 1
    assert gauge(families, "jwktool_pending_keys") == 1
    assert gauge(families, "jwktool_active_key_age_seconds") == report["active_age_seconds"]
    assert (
        gauge(families, "jwktool_oldest_pending_key_age_seconds")
        == report["oldest_pending_age_seconds"]
    )
    assert abs(gauge(families, "jwktool_status_timestamp_seconds") - time.time()) < 3600
    per_key = families["jwktool_key_age_seconds"]
    assert per_key["type"] == "gauge"
    by_kid = {labels["kid"]: (labels, value) for labels, value in per_key["samples"]}
    for key in report["keys"]:
        labels, value = by_kid[key["kid"]]
        assert labels == {"kid": key["kid"], "alg": "ES256", "status": key["status"]}
        assert value == key["age_seconds"]
    # Metrics are not secret: node_exporter (another user) must read them.
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644


def test_prometheus_file_is_written_when_rotation_is_late(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json", active_days=100)
    metrics = tmp_path / "jwktool.prom"
    metrics.write_text("# HELP jwktool_rotation_ok stale, from an earlier run\n", encoding="utf-8")
    result = cli("keys", "status", "--keystore", str(store), "--prometheus", str(metrics))
    assert result.exit_code == EXIT_STATUS_ACTIVE_OLD
    families = parse_prometheus(metrics.read_text(encoding="utf-8"))
    assert gauge(families, "jwktool_rotation_ok") == 0
    assert gauge(families, "jwktool_pending_keys") == 0
    assert gauge(families, "jwktool_active_key_age_seconds") >= 100 * DAY - 120


def test_prometheus_labels_are_escaped(cli: CliInvoke, tmp_path: Path) -> None:
    store = tmp_path / "ks.json"
    odd = 'ops "blue" \\ key'
    keys.generate_key(store, alg="ES256", kid=odd)
    metrics = tmp_path / "jwktool.prom"
    assert status(cli, store, "--prometheus", str(metrics))[0] == EXIT_OK
    text = metrics.read_text(encoding="utf-8")
    assert 'kid="ops \\"blue\\" \\\\ key"' in text
    ((labels, _),) = parse_prometheus(text)["jwktool_key_age_seconds"]["samples"]
    assert labels["kid"] == odd


def test_prometheus_file_to_a_missing_directory_is_one_error_line(
    cli: CliInvoke, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "ks.json")
    target = tmp_path / "no" / "such" / "dir" / "jwktool.prom"
    result = cli("keys", "status", "--keystore", str(store), "--prometheus", str(target))
    assert result.exit_code not in (EXIT_OK, 1)
    assert_one_line_error(result.stderr)
    assert not target.exists()


def test_prometheus_values_are_finite_integers(cli: CliInvoke, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ks.json", active_days=3)
    metrics = tmp_path / "m.prom"
    status(cli, store, "--prometheus", str(metrics))
    for family in parse_prometheus(metrics.read_text(encoding="utf-8")).values():
        for _, value in family["samples"]:
            assert math.isfinite(value) and value == int(value) and value >= 0


# -- completion ------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script(cli: CliInvoke, shell: str) -> None:
    result = cli("completion", shell)
    assert result.exit_code == EXIT_OK, result.stderr
    assert "_JWKTOOL_COMPLETE" in result.stdout
    assert f"_JWKTOOL_COMPLETE={shell}_complete" in result.stdout
    assert result.stderr == ""


def test_completion_of_an_unknown_shell_is_a_usage_error(cli: CliInvoke) -> None:
    result = cli("completion", "tcsh")
    assert result.exit_code == EXIT_INPUT
    assert_one_line_error(result.stderr, contains="tcsh")


def complete(cli: CliInvoke, words: str, *, shell: str = "bash") -> list[str]:
    env = {
        "_JWKTOOL_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = cli(env=env)
    assert result.exit_code == EXIT_OK, result.stderr
    return result.stdout.splitlines()


def test_completion_completes_commands_and_options(cli: CliInvoke) -> None:
    assert complete(cli, "jwktool keys st") == ["plain,status"]
    top = complete(cli, "jwktool ")
    for command in ("keys", "token", "doctor", "completion", "sign", "inspect"):
        assert f"plain,{command}" in top
    options = complete(cli, "jwktool keys rotate --veri")
    assert options == ["plain,--verify"]


def test_completion_reads_no_config_file(cli: CliInvoke, home: Path) -> None:
    broken = home / ".config" / "jwktool" / "config.toml"
    broken.parent.mkdir(parents=True)
    broken.write_text("this is [ not toml\n", encoding="utf-8")
    assert complete(cli, "jwktool keys st") == ["plain,status"]


def test_completion_script_is_printed_despite_a_broken_config(cli: CliInvoke, home: Path) -> None:
    broken = home / ".config" / "jwktool" / "config.toml"
    broken.parent.mkdir(parents=True)
    broken.write_text("this is [ not toml\n", encoding="utf-8")
    result = cli("completion", "bash")
    assert result.exit_code == EXIT_OK
    assert "_JWKTOOL_COMPLETE" in result.stdout


def test_bash_completion_script_works_in_bash(cli: CliInvoke, tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "jwktool.bash"
    script.write_text(cli("completion", "bash").stdout, encoding="utf-8")
    program = (
        f'source "{script}"\n'
        "COMP_WORDS=(jwktool keys ro); COMP_CWORD=2\n"
        "_jwktool_completion jwktool\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
        "complete -p jwktool\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWKTOOL_", "_JWKTOOL"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [bash, "--noprofile", "--norc", "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "rotate" in lines
    assert any(line.startswith("complete ") and "_jwktool_completion" in line for line in lines)


# -- --version -----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(cli: CliInvoke, flag: str) -> None:
    result = cli(flag)
    assert result.exit_code == EXIT_OK
    assert result.stdout == f"jwktool, version {__version__}\n"


def test_version_matches_the_installed_metadata() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[.-]?\w+)*", __version__)
    assert importlib.metadata.version("jwktool") == __version__


def test_version_works_with_a_broken_config(cli: CliInvoke, home: Path) -> None:
    broken = home / ".config" / "jwktool" / "config.toml"
    broken.parent.mkdir(parents=True)
    broken.write_text("[[[\n", encoding="utf-8")
    result = cli("--version")
    assert result.exit_code == EXIT_OK
    assert __version__ in result.stdout


def test_version_as_a_process(run_cli: RunCli) -> None:
    proc = run_cli("--version")
    assert proc.returncode == EXIT_OK
    assert proc.stdout == f"jwktool, version {__version__}\n"
    assert proc.stderr == ""
