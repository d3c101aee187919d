"""How the house is built, read from the imports: ``python scripts/architecture.py [--json]``

Units: ``kernels``, ``generation``, ``training``, each ``webapp/<app>``, and ``webapp`` (the
project's own modules). Printed: import cycles between units, imports that climb a floor
(kernels <- generation <- training <- webapp), imports of project code inside functions, modules
over 450 lines (tests and migrations aside), and the call sites of the greeting path.
tests/test_architecture.py holds the floors and the cycles to this script's reading.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "generation", "training", "webapp")
FLOOR = {"kernels": 0, "generation": 1, "training": 2, "webapp": 3}
LONG_MODULE = 450
GREETING_PATH = ("stream_greetings", "write_greetings", "write_checked")


def python_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        files += [p for p in (REPO / package).rglob("*.py") if "migrations" not in p.parts]
    return sorted(files)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "webapp" and len(parts) > 1 and (REPO / "webapp" / parts[1]).is_dir():
        return f"webapp.{parts[1]}"
    return parts[0]


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for each import of project code in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return [(m, line, inside) for m, line, inside in found if unit_of(m)]


def guarded_by_main(path: Path, line: int) -> bool:
    """Whether `line` sits under ``if __name__ == "__main__":`` (a script's own entry, not an edge)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                return True
    return False


def read_house() -> dict:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    inside, long_modules, greeting_calls = [], [], []
    for path in python_files():
        source_unit = unit_of(module_name(path))
        where = str(path.relative_to(REPO))
        for module, line, in_function in imports_of(path):
            target = unit_of(module)
            if in_function:
                inside.append(f"{where}:{line} {module}")
            if target != source_unit and not guarded_by_main(path, line):
                edges[(source_unit, target)].append(f"{where}:{line}")
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > LONG_MODULE:
            long_modules.append((where, lines))
        if not where.startswith("generation/greeting"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", None))
                    if name in GREETING_PATH:
                        greeting_calls.append(f"{where}:{node.lineno} {name}")
    return {"edges": {f"{a} -> {b}": sites for (a, b), sites in sorted(edges.items())},
            "cycles": cycles(edges), "climbing": climbing(edges), "imports_in_functions": inside,
            "long_modules": sorted(long_modules, key=lambda item: -item[1]), "greeting_path_calls": greeting_calls}


def cycles(edges) -> list[list[str]]:
    """Strongly connected groups of more than one unit (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def strongconnect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(set(graph) | {b for targets in graph.values() for b in targets}):
        if v not in index:
            strongconnect(v)
    return sorted(groups)


def climbing(edges) -> list[str]:
    """Imports from a lower floor into a higher one."""
    out = []
    for (a, b), sites in sorted(edges.items()):
        if FLOOR[a.split(".")[0]] < FLOOR[b.split(".")[0]]:
            out += [f"{a} -> {b} at {site}" for site in sites]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    house = read_house()
    print(f"cycles between units: {len(house['cycles'])}")
    for group in house["cycles"]:
        print("  " + " <-> ".join(group))
    print(f"imports that climb a floor: {len(house['climbing'])}")
    for line in house["climbing"]:
        print("  " + line)
    print(f"imports of project code inside functions: {len(house['imports_in_functions'])}")
    print(f"modules over {LONG_MODULE} lines: {len(house['long_modules'])}")
    for where, lines in house["long_modules"]:
        print(f"  {lines:5d}  {where}")
    print(f"greeting path call sites outside generation/greeting.py: {len(house['greeting_path_calls'])}")
    for site in house["greeting_path_calls"]:
        print("  " + site)
    if args.json:
        print(json.dumps({k: v for k, v in house.items() if k != "edges"}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
