"""Make text from outside safe to print on a terminal.

Anything jwktool prints that it did not write itself (an assertion's header
and claims, a server's error_description, a JWK's kid, a file name) could
carry terminal control sequences: ESC-based CSI/OSC sequences that clear the
screen, rewrite the window title or fake a hyperlink, their single-byte C1
forms (U+009B CSI, U+009D OSC), or Unicode bidi controls that make a line read
differently from what it holds ("Trojan Source", CVE-2021-42574).
:func:`safe_text` turns every such character into a visible escape.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["safe_text"]

#: C0 controls (newline and tab included: every field is one line), DEL, C1
#: controls, the bidi controls (ALM, LRM, RLM, LRE..RLO, LRI..PDI), the line
#: and paragraph separators, and lone surrogates (undecodable file-name bytes).
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(s: str) -> str:
    """Return ``s`` with every control, bidi or separator character escaped visibly.

    ``"\\x1b[2J"`` becomes ``\\x1b[2J`` (a backslash, then ``x1b[2J``),
    ``"\\u202e"`` becomes ``\\u202e``, a newline becomes ``\\n``. Printable text
    (any script) is unchanged, so the result is one line that shows what the
    input holds and cannot drive the terminal.
    """
    if not isinstance(s, str):
        s = str(s)
    return _UNSAFE.sub(_escape, s)
