"""docs/cli.md is generated from the click commands, and must match them.

When a command, an option or a help text changes, regenerate it:

    python docs/gen_cli_reference.py
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest

from .examples import DOCS, ROOT

REGENERATE = "python docs/gen_cli_reference.py"


def _generator() -> ModuleType:
    path = DOCS / "gen_cli_reference.py"
    spec = importlib.util.spec_from_file_location("gen_cli_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command_paths() -> list[str]:
    from jwktool.cli import cli

    gen = _generator()
    root = gen._context(cli, "jwktool", None)
    return [ctx.command_path for _, ctx in gen.walk(cli, root)]


def _leaf_paths() -> list[str]:
    from jwktool.cli import cli

    gen = _generator()
    root = gen._context(cli, "jwktool", None)
    return [
        ctx.command_path
        for command, ctx in gen.walk(cli, root)
        if not isinstance(command, click.Group)
    ]


def test_cli_reference_is_up_to_date() -> None:
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    rendered = _generator().render()
    if committed != rendered:
        import difflib

        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    rendered.splitlines(keepends=True),
                    "docs/cli.md (committed)",
                    "docs/cli.md (from the commands)",
                )
            )[:80]
        )
        raise AssertionError(
            f"docs/cli.md does not match the click commands: run {REGENERATE}\n{diff}"
        )


def test_rendering_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _generator()
    first = gen.render()
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("JWKTOOL_CLIENT_ID", "from-the-environment")
    assert gen.render() == first


def test_every_command_is_in_the_reference() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{2,4} (jwktool(?: [\w-]+)*)$", text, flags=re.M))
    missing = [path for path in _command_paths() if path not in headings]
    assert not missing, f"commands missing from docs/cli.md (run {REGENERATE}): {missing}"


def test_every_option_is_in_the_reference() -> None:
    from jwktool.cli import cli

    gen = _generator()
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = re.split(r"^#{2,4} ", text, flags=re.M)
    by_path = {s.splitlines()[0]: s for s in sections[1:]}
    missing = []
    for command, ctx in gen.walk(cli, gen._context(cli, "jwktool", None)):
        section = by_path.get(ctx.command_path, "")
        for param in command.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts:
                    if f"`{opt}" not in section and f", {opt}" not in section:
                        missing.append(f"{ctx.command_path} {opt}")
    assert not missing, f"options missing from docs/cli.md (run {REGENERATE}): {missing}"


def test_every_command_is_in_the_exit_code_table() -> None:
    text = (DOCS / "exit-codes.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(jwktool[\w -]*?)`", text, flags=re.M))
    missing = [path for path in _leaf_paths() if path not in rows]
    assert not missing, f"commands missing from the table in docs/exit-codes.md: {missing}"


def test_check_mode_reports_a_stale_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gen = _generator()
    stale = tmp_path / "cli.md"
    stale.write_text("# outdated\n", encoding="utf-8")
    monkeypatch.setattr(gen, "OUTPUT", stale)
    assert gen.main(["--check"]) == 1
    assert REGENERATE in capsys.readouterr().err
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0


def test_readme_links_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links, "README.md should link into docs/"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links to missing files: {missing}"
