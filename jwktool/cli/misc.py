"""``jwktool completion``."""

from __future__ import annotations

import click


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL.

    bash: eval "$(jwktool completion bash)" in ~/.bashrc;
    zsh: eval "$(jwktool completion zsh)" in ~/.zshrc;
    fish: jwktool completion fish > ~/.config/fish/completions/jwktool.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    # The root group is the one running this command: no import back into it.
    root = ctx.find_root().command
    click.echo(cls(root, {}, "jwktool", "_JWKTOOL_COMPLETE").source())
