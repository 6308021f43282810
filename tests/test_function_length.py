"""Issue 14: no function in the packages is over 60 lines unless its docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 60
#: the docstring line that admits a long function (the project's convention)
REASON = "Long for a reason:"


def long_functions(paths: list[Path], root: Path = REPO) -> list[str]:
    """`path:name (N lines)` of every function over LIMIT lines without a REASON in its docstring."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
                continue
            length = node.end_lineno - node.lineno + 1
            if length > LIMIT and REASON not in (ast.get_docstring(node) or ""):
                found.append(f"{path.relative_to(root)}:{node.name} ({length} lines)")
    return found


def test_no_function_is_over_60_lines_without_a_reason() -> None:
    paths = sorted(p for pkg in ("mtl_grasp", "training") for p in (REPO / pkg).rglob("*.py"))
    assert len(paths) > 100
    assert long_functions(paths) == []


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    probe = tmp_path / "probe.py"
    probe.write_text(f'def f():\n{body}\n\n\ndef g():\n    """{REASON} probe."""\n{body}\n')
    assert long_functions([probe], root=tmp_path) == [f"probe.py:f ({LIMIT + 1} lines)"]
