"""Print the import cycles among portable_nn's modules (module-level imports, TYPE_CHECKING excluded).

    python scripts/import_cycles.py        # exit status 1 if there is a cycle
"""

from __future__ import annotations

import ast
import pathlib
import sys


def module_graph(root: pathlib.Path) -> dict[str, set[str]]:
    files = {}
    for f in root.rglob("*.py"):
        name = ".".join(f.with_suffix("").parts)
        files[name.removesuffix(".__init__")] = f
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        package = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                target = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in files else target)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in files and d != name and not name.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done, stack = [], set(), []

    def visit(v: str) -> None:
        if v in stack:
            found.append([*stack[stack.index(v):], v])
            return
        if v in done:
            return
        stack.append(v)
        for w in sorted(graph[v]):
            visit(w)
        stack.pop()
        done.add(v)

    for v in sorted(graph):
        visit(v)
    return found


if __name__ == "__main__":
    found = cycles(module_graph(pathlib.Path("portable_nn")))
    for c in found:
        print(" -> ".join(c))
    print(f"{len(found)} import cycles")
    sys.exit(1 if found else 0)
