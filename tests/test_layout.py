"""The shape of `etl/`: modules grouped by layer with imports only downward, and no
module or class so large that a newcomer cannot take it in (docs/architecture.md).

Layers, bottom to top:
- the common ground: `etl.config`, `etl.secret`, `etl.errors`, `etl.transform`,
  `etl.dimensions`, `etl.wording`, `etl.logcontext` (they import nothing of the tool's
  but each other);
- `etl.asana` (the API: client, extract) and `etl.store` (the database), side by side:
  neither imports the other;
- `etl.run`: one run, over both;
- `etl.cli`: the command line, over everything.
`etl.simulator`, the fake Asana, stands beside the tool: it may read `etl.asana`'s
constants, and only the command line (`demo`) imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ETL = Path(__file__).resolve().parent.parent / "etl"

#: layer → the layers it may import from (itself included).
ALLOWED = {
    "base": {"base"},
    "asana": {"base", "asana"},
    "store": {"base", "store"},
    "simulator": {"base", "asana", "simulator"},
    "run": {"base", "asana", "store", "run"},
    "cli": {"base", "asana", "store", "run", "simulator", "cli"},
}
BASE = {"etl.config", "etl.secret", "etl.errors", "etl.transform", "etl.dimensions",
        "etl.wording", "etl.logcontext", "etl.logorder"}

#: The longest a module and a class may be, in lines, but for those named here with why.
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150
LARGER = {
    # a fake of Asana's whole behaviour in one request handler: one branch an endpoint
    # and a fault, each short, read top to bottom (the routes split out as K and L add them)
    "etl.simulator.handler._Handler": "the fake API's one handler",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ETL.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(ETL.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer(module: str) -> str | None:
    if module in BASE:
        return "base"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    if module == "etl.__main__":
        return "cli"
    return None  # etl itself: the public API, imported lazily


def imported(tree: ast.Module, module: str) -> set[str]:
    """The tool's modules that `module` imports, at any depth (in a function too)."""
    found = set()
    package = module if module in modules() and modules()[module].name == "__init__.py" \
        else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "etl" and name in modules()}


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_go_only_downward(module):
    own = layer(module)
    if own is None:
        return
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    wrong = sorted(name for name in imported(tree, module)
                   if layer(name) is not None and layer(name) not in ALLOWED[own])
    assert not wrong, f"{module} ({own}) imports {wrong}"


def test_asana_and_store_do_not_know_each_other():
    for module, path in modules().items():
        own = layer(module)
        if own in ("asana", "store"):
            other = {"asana": "store", "store": "asana"}[own]
            names = imported(ast.parse(path.read_text(encoding="utf-8")), module)
            assert not [n for n in names if layer(n) == other], module


def test_no_module_or_class_is_too_large_to_take_in():
    too_large = []
    for module, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and module not in LARGER:
            too_large.append(f"module {module}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                name = f"{module}.{node.name}"
                if size > MAX_CLASS_LINES and name not in LARGER:
                    too_large.append(f"class {name}: {size} lines")
    assert not too_large, "\n".join(too_large)


def test_the_architecture_picture_names_every_module():
    picture = (ETL.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for module, path in modules().items():
        where = path.relative_to(ETL.parent).as_posix()  # etl/run/loader.py
        folder, name = where.rsplit("/", 1)
        if where in picture or (f"{folder}/" in picture and name in picture):
            continue
        missing.append(where)
    assert not missing, f"docs/architecture.md does not name {missing}"
