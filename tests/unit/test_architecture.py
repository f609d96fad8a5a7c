"""The package's shape (issue 12, docs/architecture.md), checked from the source.

* no module in jwktool/ much over 500 lines;
* no import of another module's ``_private`` name;
* no import cycle between jwktool's modules, counting imports inside functions
  (the lazy ones) too;
* nothing below the command line imports click; signing never imports requests.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "jwktool"
#: "~500 lines": a module may run a little over while it holds one idea.
MAX_LINES = 520


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names imported from it) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            if node.module is None:  # 'from . import keys': each name is a module
                found += [(f"{target}.{n}", []) for n in names]
            else:
                found.append((target, names))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A module loaded by name from a lazy table ("_cli_token:doctor",
            # "module:attribute") is an import too: the cycle it closes is as real.
            text, colon, attr = node.value.partition(":")
            if colon and text.replace("_", "").replace(".", "").isalnum() and attr.isidentifier():
                found.append((f"{package}.{text.lstrip('.')}", []))
    return found


def test_no_module_is_much_over_500_lines() -> None:
    long = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
    }
    assert {n: count for n, count in long.items() if count > MAX_LINES} == {}


def test_no_module_imports_another_modules_private_name() -> None:
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        for target, names in _imports(name, path):
            if target not in modules or target == name:
                continue
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__"):
                    offenders.append(f"{name} imports {target}.{imported}")
    assert offenders == []


def test_no_import_cycle_even_through_lazy_imports() -> None:
    modules = _modules()
    graph = {
        name: sorted(
            {t for t, _ in _imports(name, path) if t in modules and t != name}
            - {"jwktool"}  # the package's lazy re-export table points everywhere by design
        )
        for name, path in modules.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    assert cycles == []


def test_only_the_command_line_imports_click_and_signing_never_imports_requests() -> None:
    modules = _modules()
    click_users = {
        name
        for name, path in modules.items()
        for target, _ in _imports(name, path)
        if target.split(".")[0] == "click"
    }
    assert {n for n in click_users if not n.startswith("jwktool.cli")} == set()
    signing = ("jwktool.signer", "jwktool.keysource", "jwktool.keys", "jwktool.keystore")
    for name in signing:
        imported = {t.split(".")[0] for t, _ in _imports(name, modules[name])}
        assert "requests" not in imported, name
