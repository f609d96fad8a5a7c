"""Library messages in the command line's words: a parameter's name becomes its option's.

The library names its parameters (``size applies to RSA keys only``) and lists
them in the error's ``params``; a command re-raises the error with the
options it has (``--size applies to RSA keys only``). Only the names an error
lists are replaced, once each, so a kid or a path in the message is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import JwktoolError


def as_options(exc: JwktoolError, renamed: dict[str, str] | None = None) -> str:
    """Return ``exc``'s message with each parameter it names written as an option.

    :param renamed: parameter -> option where the option is not ``--`` plus the
        parameter with dashes (``pem_passphrase`` -> ``--pem-passphrase-file``).
    """
    message = exc.message
    for param in exc.params:
        option = (renamed or {}).get(param) or "--" + param.replace("_", "-")
        message = re.sub(rf"(?<![\w-]){re.escape(param)}(?![\w-])", option, message, count=1)
    return message


@contextmanager
def options_named(renamed: dict[str, str] | None = None) -> Iterator[None]:
    """Re-raise a library error with its parameters named as options (a decorator too).

    :param renamed: as for :func:`as_options`.
    """
    try:
        yield
    except JwktoolError as exc:
        if exc.params:
            exc.args = (as_options(exc, renamed),)
        raise
