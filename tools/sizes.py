"""Size limits as a lint rule: every module under 600 lines, every function under 70.

Small modules with one job and short functions are the house style (README, "How we write
code"); this check makes it a rule rather than a promise. Run by ``tools/check``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MODULE_LINES_MAX = 600
FUNCTION_LINES_MAX = 70
ROOTS = ("scryp", "tests", "tools", "benchmarks")


def violations(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    found = []
    lines = source.count("\n") + (0 if source.endswith("\n") else 1)
    if lines > MODULE_LINES_MAX:
        found.append(f"{path}: {lines} lines (max {MODULE_LINES_MAX})")
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > FUNCTION_LINES_MAX:
                found.append(
                    f"{path}:{node.lineno}: {node.name} is {length} lines "
                    f"(max {FUNCTION_LINES_MAX})"
                )
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(".")
    found = [
        line
        for top in ROOTS
        for path in sorted((root / top).rglob("*.py"))
        for line in violations(path)
    ]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
