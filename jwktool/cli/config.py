"""``jwktool config ...``: which configuration files are read; trusting project files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._text import safe_text
from ._common import echo_json, json_option


@click.group("config")
def config() -> None:
    """Show the configuration files and profile in use; trust a project's jwktool.toml.

    A jwktool.toml found in the current directory or a parent (up to your
    home directory or the repository root) could come from anyone: a cloned
    repository, another user of /tmp. jwktool reads it only after you have
    read it and run 'jwktool config trust'; once it changes, it is ignored
    until you trust it again. Your own ~/.config/jwktool/config.toml and
    $JWKTOOL_CONFIG need no trust, but every file must be yours and not
    writable by group or others.
    """


def _path(path: str | None) -> Path | None:
    return None if path is None else Path(path)


@config.command("trust")
@click.argument("path", required=False)
def config_trust(path: str | None) -> None:
    """Trust the project file PATH as it is now (default: the jwktool.toml found from here).

    Read it first: it says where assertions are sent and which CA is
    trusted. Records its real path and SHA-256 hash in
    ~/.config/jwktool/trusted.json (0600).
    """
    from ..config import trust_file

    trusted = trust_file(_path(path))
    click.echo(
        safe_text(f"trusted {trusted.path} (sha256 {trusted.sha256}); it is read until it changes")
    )


@config.command("untrust")
@click.argument("path", required=False)
def config_untrust(path: str | None) -> None:
    """Stop trusting the project file PATH (default: the jwktool.toml found from here)."""
    from ..config import untrust_file

    target = Path(path) if path is not None else None
    removed = untrust_file(target)
    if removed is None:
        shown = target if target is not None else "the project file"
        click.echo(safe_text(f"{shown} was not trusted; nothing changed"))
    else:
        click.echo(safe_text(f"no longer trusted: {removed}"))


@config.command("show")
@json_option
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """List the configuration files found, whether each is read, and the profile's values.

    For each value of the selected profile (--profile, $JWKTOOL_PROFILE or
    the files' default), the file it comes from. Profiles hold no secrets,
    only paths to them.
    """
    from ..config import find_config_files, load_profile, trust_list_path
    from ..errors import InputError

    files = find_config_files()
    refused = [f for f in files if f.status == "refused"]
    profile = None
    if not refused:
        profile = load_profile(ctx.find_root().params.get("profile"))
    if as_json:
        out: dict[str, Any] = {
            "files": [
                {
                    "path": str(f.path),
                    "kind": f.kind,
                    "status": f.status,
                    "detail": f.detail,
                    "sha256": f.sha256,
                }
                for f in files
            ],
            "trust_list": str(trust_list_path()),
        }
        if profile is not None:
            out["profile"] = {
                "name": profile.name,
                "values": {
                    key: {"value": value, "source": str(profile.origins.get(key, ""))}
                    for key, value in profile.values.items()
                },
            }
            out["warnings"] = list(profile.warnings)
        echo_json(out)
    else:
        _print_show(files, profile, trust_list_path())
    if refused:
        raise InputError(refused[0].detail)


def _print_show(files: list[Any], profile: Any, trust_list: Path) -> None:
    if not files:
        click.echo("files: none found")
    else:
        click.echo("files, lowest precedence first:")
        width = max(len(str(f.path)) for f in files)
        for f in files:
            click.echo(safe_text(f"  {f.kind:<8} {f.path!s:<{width}}  {f.detail}"))
    click.echo(safe_text(f"trust list: {trust_list}"))
    if profile is None:
        return
    if profile.name is None:
        click.echo("profile: none selected")
        return
    click.echo(safe_text(f"profile: {profile.name}"))
    if not profile.values:
        return
    width = max(len(k) for k in profile.values)
    for key, value in profile.values.items():
        source = profile.origins.get(key)
        click.echo(safe_text(f"  {key:<{width}}  {value}  (from {source})"))
