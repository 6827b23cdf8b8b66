"""The simulator stays in rooms of their own (issue J): no module over about 400 lines,
no class over about 150."""

from __future__ import annotations

import ast
from pathlib import Path

import etl.simulator

PACKAGE = Path(etl.simulator.__file__).parent


def test_no_module_or_class_of_the_simulator_is_too_big():
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 400:
            too_big.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 150:
                too_big.append(f"{path.name}: class {node.name}, "
                               f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_big
