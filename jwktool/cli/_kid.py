"""A command whose KID argument may start with '-' (RFC 7638 thumbprints can)."""

from __future__ import annotations

import click

__all__ = ["KidCommand"]


class KidCommand(click.Command):
    """A command whose KID argument may start with '-' (thumbprints can)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            names = {n for p in self.params for n in getattr(p, "opts", [])}
            names |= {"-h", "--help"}
            takes_value = {
                n
                for p in self.params
                if isinstance(p, click.Option) and not p.is_flag
                for n in p.opts
            }
            dashed, rest, skip = [], [], False
            for arg in args:
                if skip:
                    rest.append(arg)
                    skip = False
                elif arg.startswith("-") and arg.split("=", 1)[0] not in names:
                    dashed.append(arg)
                else:
                    rest.append(arg)
                    skip = arg in takes_value
            if dashed:
                args = [*rest, "--", *dashed]
        return super().parse_args(ctx, args)
