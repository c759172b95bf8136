"""The largest classes and function bodies of the package, in lines, for the size rule
(no class over ~300 lines, no function body over ~100, outside tests and bench).

A function body is counted from its first statement after the docstring to its end.

    python bench/code_sizes.py [--top N] [FOLDER ...]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("cli", "model", "data", "tokenizer", "server", "attn")


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[1] if len(body) > 1 and isinstance(ast.get_docstring(node), str) else body[0]
    return node.end_lineno - first.lineno + 1


def sizes(folders: list[str]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(classes, function bodies): (lines, "path:line name"), largest first."""
    classes, functions = [], []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            where = path.relative_to(ROOT)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    lines = node.end_lineno - node.lineno + 1
                    classes.append((lines, f"{where}:{node.lineno} {node.name}"))
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    functions.append((_body_lines(node), f"{where}:{node.lineno} {node.name}"))
    return sorted(classes, reverse=True), sorted(functions, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", default=list(FOLDERS))
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    classes, functions = sizes(args.folders)
    for title, rows in (("classes", classes), ("function bodies", functions)):
        print(f"{title}:")
        for lines, where in rows[: args.top]:
            print(f"  {lines:5d}  {where}")


if __name__ == "__main__":
    main()
