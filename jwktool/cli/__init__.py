"""The ``jwktool`` command line: a thin layer over the library.

Each command parses its options, calls one library function and prints the
result. Library errors become a one-line message on stderr and the exit code
documented in docs/exit-codes.md, in one place (:class:`~jwktool.cli._group.Group`).

This package holds the root group only. The commands live in their own
modules (``keys``, ``sign``, ``token``, ``config``, ``misc``), imported only
when named, so ``jwktool --version`` and a cached ``jwktool token`` never pay
for the others; they import what they share from :mod:`jwktool.cli._common`,
never from here.
"""

from __future__ import annotations

from typing import Any, Final

import click

from .._version import __version__
from ._common import complete_profile, warn
from ._group import Group

__all__ = ["cli", "main"]

#: Command name -> "module:attribute" of this package, imported when the command is used.
LAZY_COMMANDS: Final = {
    "completion": "misc:completion",
    "config": "config:config",
    "doctor": "token:doctor",
    "inspect": "sign:inspect",
    "keys": "keys:keys",
    "sign": "sign:sign",
    "token": "token:token",
}
#: The subcommands of the groups above (a profile's defaults apply at any depth).
_SUBCOMMANDS: Final = frozenset(
    {
        "activate",
        "export",
        "generate",
        "import",
        "list",
        "passwd",
        "remove",
        "publish",
        "retire",
        "rotate",
        "status",
    }
)


def _hoist_profile(args: list[str]) -> list[str]:
    """Move ``--profile NAME`` given after the subcommand to the front, where it belongs.

    ``jwktool token --profile x`` reads as it was meant: the profile must be
    loaded before the subcommand's options take their defaults from it.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--profile" and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 2
            continue
        if arg.startswith("--profile="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class _RootGroup(Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_profile(list(args)))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        import importlib

        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(f".{module_name}", __name__), attr)
        return command


class _ProfileDefaults(dict[str, Any]):
    """click's default_map for a profile: the same values for every command, at any depth."""

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        if key in LAZY_COMMANDS or key in _SUBCOMMANDS:
            return self
        return default


def _profile_defaults(values: dict[str, Any]) -> _ProfileDefaults:
    out = _ProfileDefaults(values)
    if "size" in out:
        out["size"] = str(out["size"])  # a click.Choice of strings
    # 'jwktool sign' has no --issuer: a profile's issuer is its aud.
    if "audience" not in out and "issuer" in out and "env" not in out:
        out["audience"] = out["issuer"]
    return out


@click.group(
    cls=_RootGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "JWKTOOL"},
)
@click.version_option(__version__, "-V", "--version", prog_name="jwktool")
@click.option(
    "--profile",
    envvar="JWKTOOL_PROFILE",
    shell_complete=complete_profile,
    default=None,
    help="Take defaults from this profile of ~/.config/jwktool/config.toml "
    "or a trusted jwktool.toml (see 'jwktool config').",
)
@click.pass_context
def cli(ctx: click.Context, profile: str | None) -> None:
    """Keys, private_key_jwt client assertions and OAuth access tokens.

    Made for Digitaal Vlaanderen (GIPOD) and any OAuth 2.0 server that
    accepts RFC 7523 client assertions. Options can also come from a
    JWKTOOL_... environment variable or a profile; explicit options win,
    then the environment, then the profile. Options marked "Command line
    only" (private keys, weaker checks) come from the command line alone. A
    jwktool.toml project file is read only once you trust it ('jwktool
    config trust'). Exit codes: docs/exit-codes.md.
    """
    if ctx.resilient_parsing or ctx.invoked_subcommand in ("completion", "config"):
        # Shell completion must work even with a broken profile file, and
        # 'jwktool config' is how to inspect and fix one.
        return
    from ..config import load_profile

    loaded = load_profile(profile)
    for warning in loaded.warnings:
        warn(warning)
    if loaded.values:
        ctx.default_map = _profile_defaults(loaded.values)


def main() -> None:
    """Run the jwktool command line."""
    cli(prog_name="jwktool")
