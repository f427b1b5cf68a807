"""Every product function reads top to bottom on a screen or two: none is over 80 lines
(tests and test helpers aside)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 80


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


@pytest.mark.slow
def test_no_product_function_is_over_80_lines():
    sources = [p for base in ("core/src", "plugins", "service/src")
               for p in (ROOT / base).rglob("*.py")
               if "tests" not in p.parts and "testing" not in p.parts]
    assert len(sources) > 100  # the whole product was read
    long = [f"{p.relative_to(ROOT)}:{line} {name} ({size} lines)"
            for p in sources for name, line, size in _functions(p) if size > LIMIT]
    assert long == []
