"""``jwktool completion``."""

from __future__ import annotations

import click


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    bash: eval "$(jwktool completion bash)" in ~/.bashrc;
    zsh: eval "$(jwktool completion zsh)" in ~/.zshrc;
    fish: jwktool completion fish > ~/.config/fish/completions/jwktool.fish
    """
    from click.shell_completion import get_completion_class

    from .cli import cli as root

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(root, {}, "jwktool", "_JWKTOOL_COMPLETE").source())
