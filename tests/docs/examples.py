"""Find the code blocks in README.md and docs/*.md, and the marker that says what to do.

The marker convention (also described at the top of test_examples.py):

* Every fenced code block starts at the beginning of a line (plain MkDocs does
  not render fences nested in lists) and names a language.
* Blocks in ``sh`` or ``python`` carry a marker: an HTML comment on the nearest
  non-blank line above the fence. It is invisible on the built site and plain
  to see in the Markdown:

  - ``<!-- test: run -->``: executed; must exit 0.
  - ``<!-- test: run exit=N -->``: executed; must exit N (a documented failure).
  - ``<!-- test: background -->``: started and left running (a server) until the
    page's last block has run; it is ready once it prints its first line.
  - ``<!-- test: file NAME -->``: saved as NAME (executable) in the page's working
    directory, for later blocks to run; not run by itself.
  - ``<!-- test: install -->``: an installation command. The test suite already
    runs inside the virtualenv it makes, so its install steps (``python3 -m venv
    DIR``, ``. DIR/bin/activate``, ``[DIR/bin/]pip install ...``) are left out and
    the rest of the block runs; it must exit 0. See :func:`without_install_steps`.
  - ``<!-- test: skip REASON -->``: not executed, because REASON (for instance
    "needs the real Digitaal Vlaanderen hosts").

* Blocks in ``text``, ``json``, ``ini`` or ``toml`` are output, file contents or
  configuration: shown, never run, no marker needed.
* Anything else (a block without a language, another language, a marker that
  is not followed by a block, a marker of unknown kind) is an error, so no
  example escapes the tests unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: Languages whose blocks are code and need a marker.
CODE_LANGUAGES = frozenset({"sh", "python"})
#: Languages whose blocks are data: shown, never run.
DATA_LANGUAGES = frozenset({"text", "json", "ini", "toml"})
KINDS = frozenset({"run", "background", "file", "skip", "install"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^<!--\s*test:\s*(?P<kind>[a-z-]+)(?P<rest>.*?)\s*-->\s*$")
#: One install step of an ``install`` block (a command of a line or of an ``&&`` chain).
_INSTALL_STEP = re.compile(
    r"^(python3? -m venv \S+|\. \S+/bin/activate|(\S+/bin/)?pip3? install( .*)?)$"
)


@dataclass(frozen=True)
class Block:
    """One fenced code block and what its marker says to do with it."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    kind: str | None  # run, background, file, skip; None for data blocks
    argument: str  # exit=N for run, NAME for file, REASON for skip

    @property
    def where(self) -> str:
        """``docs/page.md:LINE``, for messages."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def expected_exit(self) -> int:
        """The exit status a run block must end with."""
        match = re.fullmatch(r"exit=(\d+)", self.argument)
        return int(match.group(1)) if match else 0


def without_install_steps(code: str) -> str:
    """``code`` without its install steps: what an ``install`` block leaves to run.

    Each line is split at ``&&``; the parts that make a virtualenv, activate
    it or ``pip install`` are dropped, the others are joined again with ``&&``.
    ``python3 -m venv .venv && . .venv/bin/activate && pip install -e . &&
    jwktool keys generate`` leaves ``jwktool keys generate``.
    """
    kept_lines = []
    for line in code.splitlines():
        parts = [part.strip() for part in line.split("&&")]
        kept = [part for part in parts if part and not _INSTALL_STEP.match(part)]
        if kept:
            kept_lines.append(" && ".join(kept))
    return "\n".join(kept_lines) + "\n"


class MarkerError(Exception):
    """A page breaks the marker convention."""


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def parse(path: Path) -> list[Block]:
    """Return the code blocks of one page; raise MarkerError on any breach of the convention."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT)
    blocks: list[Block] = []
    problems: list[str] = []
    pending_marker: tuple[int, str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line.strip())
        if marker:
            if pending_marker is not None:
                problems.append(f"{rel}:{pending_marker[0]}: marker not followed by a code block")
            marker_kind, rest = marker.group("kind"), marker.group("rest").strip()
            if marker_kind not in KINDS:
                problems.append(f"{rel}:{i + 1}: unknown marker kind {marker_kind!r}")
            pending_marker = (i + 1, marker_kind, rest)
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip() and pending_marker is not None:
                problems.append(f"{rel}:{pending_marker[0]}: marker not followed by a code block")
                pending_marker = None
            i += 1
            continue
        start = i
        opener = fence.group("fence")
        language = fence.group("info").strip().split(" ")[0] if fence.group("info") else ""
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(opener):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        where = f"{rel}:{start + 1}"
        if fence.group("indent"):
            problems.append(f"{where}: indented fence (plain MkDocs renders it as text)")
        kind: str | None = None
        argument = ""
        if language in CODE_LANGUAGES:
            if pending_marker is None:
                problems.append(
                    f"{where}: {language} block without a marker; put "
                    "'<!-- test: run -->' or '<!-- test: skip REASON -->' above it"
                )
            else:
                kind, argument = pending_marker[1], pending_marker[2]
                if kind == "skip" and not argument:
                    problems.append(f"{where}: 'skip' needs a reason")
                if kind == "file" and not re.fullmatch(r"[\w.-]+", argument):
                    problems.append(f"{where}: 'file' needs a plain file NAME")
                if kind == "run" and argument and not re.fullmatch(r"exit=\d+", argument):
                    problems.append(f"{where}: 'run' takes only exit=N, not {argument!r}")
                if kind == "background" and language != "sh":
                    problems.append(f"{where}: only sh blocks can run in the background")
                if kind == "install" and (language != "sh" or argument):
                    problems.append(f"{where}: 'install' is for sh blocks and takes nothing")
                if kind == "install" and "pip install" not in "\n".join(body):
                    problems.append(f"{where}: an 'install' block without 'pip install'")
        elif language in DATA_LANGUAGES:
            if pending_marker is not None:
                problems.append(f"{where}: a {language} block is never run; remove its marker")
        else:
            problems.append(
                f"{where}: code block language {language or '(none)'!r}; use "
                f"{', '.join(sorted(CODE_LANGUAGES | DATA_LANGUAGES))}"
            )
        pending_marker = None
        blocks.append(Block(path, start + 1, language, "\n".join(body) + "\n", kind, argument))
    if pending_marker is not None:
        problems.append(f"{rel}:{pending_marker[0]}: marker not followed by a code block")
    if problems:
        raise MarkerError("\n".join(problems))
    return blocks
