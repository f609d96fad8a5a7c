"""The root group's error handling: every error becomes one line and an exit code."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ._common import Failure, as_options, echo_json_error, exit_code_for

__all__ = ["Group"]


class Group(click.Group):
    """A click group that turns every error into one line and an exit code, in one place."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        # Scripts that asked for JSON get JSON on failure too: one error object on stdout.
        wants_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.UsageError as exc:
            from .._text import safe_text

            where = exc.ctx.command_path if exc.ctx is not None else "jwktool"
            message = f"{exc.format_message()} (see '{where} --help')"
            if wants_json:
                echo_json_error("usage", message, exc.exit_code)
            click.echo(safe_text(f"jwktool: error: {message}"), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            # click's own exceptions (FileError, ...) go through Failure.show too.
            failure = exc if isinstance(exc, Failure) else Failure(exc.format_message(), 1)
            if wants_json:
                echo_json_error(failure.code, failure.format_message(), failure.exit_code)
            failure.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            # click turns Ctrl-C (and end of input) at a prompt into Abort.
            click.echo("jwktool: error: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (e.g. '| head'): exit as a Unix tool killed by SIGPIPE.
            sys.stderr.close()
            sys.exit(141)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        from ..errors import EXIT_INTERNAL, JwktoolError

        try:
            return super().invoke(ctx)
        except JwktoolError as exc:
            raise Failure(as_options(exc), exit_code_for(exc), exc.code) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            raise Failure("interrupted", 130) from None
        except Exception as exc:
            if os.environ.get("JWKTOOL_DEBUG"):
                raise
            # The message of an unexpected exception could carry anything; the
            # type and place are enough for a bug report and leak nothing.
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = (
                f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
                if tb
                else ""
            )
            raise Failure(
                f"internal error {type(exc).__name__}{where} "
                "(run again with JWKTOOL_DEBUG=1 for details, and please report it)",
                EXIT_INTERNAL,
            ) from None
