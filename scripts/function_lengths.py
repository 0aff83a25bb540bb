"""Every function in portable_nn/ has at most 50 lines of code, its docstring aside; model.py at most 250 lines.

    python scripts/function_lengths.py        # exits 1 naming each function over the limit
"""

from __future__ import annotations

import ast
import pathlib
import sys

LIMIT = 50
MODEL_LIMIT = 250


def code_lines(node: ast.AST) -> int:
    """Lines of the function from its ``def`` to its end, less its docstring's lines."""
    body = node.body  # type: ignore[attr-defined]
    lines = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent / "portable_nn"
    over = []
    for path in sorted(root.rglob("*.py")):
        over.extend(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {code_lines(node)} lines"
                    for node in ast.walk(ast.parse(path.read_text(), str(path)))
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > LIMIT)
    model = root / "model.py"
    n = len(model.read_text().splitlines())
    if n > MODEL_LIMIT:
        over.append(f"portable_nn/model.py: {n} lines (at most {MODEL_LIMIT}: Model only composes)")
    for line in over:
        print(line)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
