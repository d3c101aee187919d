"""How the house is built, read from the imports: ``python scripts/architecture.py [--json]``

Units: ``kernels``, ``generation``, ``training``, each ``webapp/<app>``, and ``webapp`` (the
project's own modules). Printed: import cycles between units, imports that climb a floor
(kernels <- generation <- training <- webapp, and inside webapp the order of WEBAPP_APPS: an app
imports only apps before it), imports of project code inside functions (a deferral is justified
when it keeps out a heavy library (torch and its kin) that the importer does not load itself, or
waits for Django's app registry in ready();
the rest are listed in PENDING_INLINE_IMPORTS), modules over 450 lines (tests and migrations
aside; LONG_MODULES_NOT_YET_SPLIT names those still waiting), the modules that write greetings
(build a prompt and sample from it; goal 1, generation/greeting.py) and the callers of that one path.
tests/test_architecture.py fails on anything new in the first four (the greeting paths are measured, not yet enforced).
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
# Inside the web floor, bottom first: an app imports only apps before it. `webapp` itself (settings,
# URLs, the Celery app) wires every app together, so it sits on top with `site` (the demo runner).
WEBAPP_APPS = ("core", "corpus", "jobs", "checkpoints", "judges", "annotation", "studio", "api", "rlaif", "marl",
               "site")
WEBAPP_TOP = "webapp"
LONG_MODULE = 450
# Libraries whose import is slow (torch, transformers...): deferring one inside a function is a reason.
HEAVY_LIBRARIES = frozenset({"torch", "triton", "transformers", "safetensors", "numpy", "scipy", "pandas", "pyarrow",
                             "sklearn", "vmas", "mpe2"})
# Modules still over LONG_MODULE lines, each waiting to be split along its sections (shrink this list).
LONG_MODULES_NOT_YET_SPLIT: dict[str, str] = {}
# Imports of project code inside functions that neither defer a heavy library nor wait for Django's
# app registry: each is still to move to its module's top (shrink this list). "path module".
PENDING_INLINE_IMPORTS: frozenset[str] = frozenset({
    "training/marl/train.py training.marl.vector_train",
    "training/marl/train.py training.marl.vmas_env",
    "webapp/jobs/services.py webapp.jobs.tasks",
    "webapp/marl/jobs.py webapp.checkpoints.services",
    "webapp/marl/jobs.py webapp.marl.services",
    "webapp/studio/services.py webapp.studio.tasks",
})
# The one greeting path (goal 1 of issue #17: one place builds the prompt, samples and cleans the text).
GREETING_PATH_MODULE = "generation/greeting.py"
GREETING_PATH = ("stream_greetings", "write_greetings", "write_checked")
# A module writes greetings on its own when it both builds a generation prompt and samples from it.
PROMPT_BUILDERS = frozenset({"greeting_prompt", "encode_prompt"})
SAMPLERS = frozenset({"stream", "generate"})  # backend.stream, engine.generate, model.generate
ENGINE_PACKAGE = "generation/engine/"  # the engine samples token ids; it builds no prompt
# The backends are the interface the one path calls (each encodes its own prompt and streams); they write no greeting.
BACKENDS_MODULE = "generation/backends.py"


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
    return [(m, line, inside is not None) for m, line, inside in _imports(path) if unit_of(m)]


def _imports(path: Path) -> list[tuple[str, int, str | None]]:
    """(module, line, name of the innermost enclosing function or None) for every absolute import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node, function: str | None):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else (
                "<lambda>" if isinstance(child, ast.Lambda) else function)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, function))
            elif isinstance(child, ast.ImportFrom) and child.level and function is None:
                found.append((_absolute(path, child), child.lineno, function))
            visit(child, inner)

    visit(tree, None)
    return found


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def heavy_modules(files: list[Path]) -> dict[str, frozenset[str]]:
    """{project module: the heavy libraries importing it loads, directly or through project modules}.

    Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so a module carries its packages' libraries too."""
    top = {module_name(path): {m for m, _, function in _imports(path) if function is None} | _submodules_imported(path)
           for path in files}

    def runs(name: str) -> list[str]:
        parts = name.split(".")
        return [prefix for k in range(1, len(parts) + 1) if (prefix := ".".join(parts[:k])) in top]

    loads = {module: {name.split(".")[0] for name in names if name.split(".")[0] in HEAVY_LIBRARIES}
             for module, names in top.items()}
    changed = True
    while changed:  # a fixed point: cycles between project modules are allowed at this level
        changed = False
        for module, names in top.items():
            before = len(loads[module])
            for name in names:
                for prefix in runs(name):
                    loads[module] |= loads[prefix]
            for prefix in runs(module):
                loads[module] |= loads[prefix]
            changed |= len(loads[module]) != before
    return {module: frozenset(libraries) for module, libraries in loads.items() if libraries}


def _submodules_imported(path: Path) -> set[str]:
    """``package.name`` for each module-level ``from package import name`` (a submodule, when one exists)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.ImportFrom):
            package = node.module if node.level == 0 else _absolute(path, node)
            found |= {f"{package}.{alias.name}" for alias in node.names if package}
    return found


def deferral_reason(where: str, module: str, function: str | None, heavy: dict[str, frozenset[str]]) -> str | None:
    """Why an import of project code sits inside a function, or None when nothing forces it."""
    importer = module_name(REPO / where)
    deferred = heavy.get(module, frozenset()) - heavy.get(importer, frozenset())
    if deferred:
        return "defers " + ", ".join(sorted(deferred))
    if function == "ready" and where.endswith("apps.py"):
        return "waits for Django's app registry (AppConfig.ready)"
    if where == "webapp/celery.py":
        return "the Celery app loads before Django's app registry; models load in the worker's start()"
    return None


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
    inside, deferred, unjustified, long_modules, greeting_calls, greeting_paths = [], [], [], [], [], []
    files = python_files()
    heavy = heavy_modules(files)
    for path in files:
        source_unit = unit_of(module_name(path))
        where = str(path.relative_to(REPO))
        for module, line, function in _imports(path):
            target = unit_of(module)
            if target is None:
                continue
            if function is not None:
                inside.append(f"{where}:{line} {module}")
                reason = deferral_reason(where, module, function, heavy)
                if reason:
                    deferred.append(f"{where}:{line} {module} ({reason})")
                elif f"{where} {module}" not in PENDING_INLINE_IMPORTS:
                    unjustified.append(f"{where}:{line} {module}")
            if target != source_unit and not guarded_by_main(path, line):
                edges[(source_unit, target)].append(f"{where}:{line}")
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > LONG_MODULE:
            long_modules.append((where, lines))
        path_sites, calls = greeting_sites(path)
        if path_sites and not where.startswith(ENGINE_PACKAGE) and where != BACKENDS_MODULE:
            greeting_paths.append((where, path_sites))
        if where != GREETING_PATH_MODULE:
            greeting_calls += [f"{where}:{line} {name}" for line, name in calls]
    return {"edges": {f"{a} -> {b}": sites for (a, b), sites in sorted(edges.items())},
            "cycles": cycles(edges), "climbing": climbing(edges), "unlisted_apps": unlisted_webapp_apps(),
            "imports_in_functions": inside, "deferred_imports": deferred, "unjustified_imports": unjustified,
            "long_modules": sorted(long_modules, key=lambda item: -item[1]),
            "long_modules_not_allowed": [(w, n) for w, n in long_modules if w not in LONG_MODULES_NOT_YET_SPLIT],
            "greeting_paths": greeting_paths, "greeting_path_calls": greeting_calls}


def greeting_sites(path: Path) -> tuple[list[str], list[tuple[int, str]]]:
    """(where `path` builds a prompt and samples from it: "line name" of each such call, empty unless
    it does both; its calls of the one greeting path as (line, name))."""
    prompts, samples, calls = [], [], []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", None))
        if name in PROMPT_BUILDERS:
            prompts.append(f"{node.lineno} {name}")
        elif name in SAMPLERS and isinstance(node.func, ast.Attribute):
            samples.append(f"{node.lineno} {name}")
        elif name in GREETING_PATH:
            calls.append((node.lineno, name))
    return (sorted(prompts + samples, key=lambda site: int(site.split()[0])) if prompts and samples else []), calls


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


def rank(unit: str) -> tuple[int, int]:
    """(floor, place among the web apps): an import may only go to a unit of lower or equal rank."""
    floor = FLOOR[unit.split(".")[0]]
    if unit == WEBAPP_TOP:
        return floor, len(WEBAPP_APPS)
    if unit.startswith("webapp."):
        app = unit.split(".", 1)[1]
        # an app missing from WEBAPP_APPS ranks above every listed one, so it is noticed as climbing
        return floor, WEBAPP_APPS.index(app) if app in WEBAPP_APPS else len(WEBAPP_APPS) + 1
    return floor, 0


def climbing(edges) -> list[str]:
    """Imports from a lower floor into a higher one, or from a web app into one after it in WEBAPP_APPS."""
    out = []
    for (a, b), sites in sorted(edges.items()):
        if rank(a) < rank(b):
            out += [f"{a} -> {b} at {site}" for site in sites]
    return out


def unlisted_webapp_apps() -> list[str]:
    """Folders of webapp/ that are apps but missing from WEBAPP_APPS."""
    apps = [p.parent.name for p in (REPO / "webapp").glob("*/apps.py")]
    return sorted(app for app in apps if app not in WEBAPP_APPS)


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
    if house["unlisted_apps"]:
        print("web apps missing from WEBAPP_APPS: " + ", ".join(house["unlisted_apps"]))
    print(f"imports of project code inside functions: {len(house['imports_in_functions'])} "
          f"({len(house['deferred_imports'])} defer a heavy library or wait for Django, "
          f"{len(house['imports_in_functions']) - len(house['deferred_imports']) - len(house['unjustified_imports'])} "
          f"pending on the allow-list, {len(house['unjustified_imports'])} unjustified)")
    for site in house["unjustified_imports"]:
        print("  unjustified: " + site)
    print(f"modules over {LONG_MODULE} lines: {len(house['long_modules'])}")
    for where, lines in house["long_modules"]:
        print(f"  {lines:5d}  {where}" + ("" if where in LONG_MODULES_NOT_YET_SPLIT else "  (not on the allow-list)"))
    print(f"modules that write greetings (build a prompt and sample from it, the engine and the backends aside): "
          f"{len(house['greeting_paths'])} (goal 1: {GREETING_PATH_MODULE})")
    for where, sites in house["greeting_paths"]:
        print(f"  {where}: " + ", ".join(sites))
    print(f"callers of the one path ({', '.join(GREETING_PATH)}): {len(house['greeting_path_calls'])}")
    for site in house["greeting_path_calls"]:
        print("  " + site)
    if args.json:
        print(json.dumps({k: v for k, v in house.items() if k != "edges"}, ensure_ascii=False))
    return 1 if failures(house) else 0


def failures(house: dict) -> list[str]:
    """What breaks the house's rules (tests/test_architecture.py asserts it is empty)."""
    out = [f"cycle: {' <-> '.join(group)}" for group in house["cycles"]]
    out += [f"climbing: {line}" for line in house["climbing"]]
    out += [f"web app missing from WEBAPP_APPS: {app}" for app in house["unlisted_apps"]]
    out += [f"import inside a function with no reason: {site}" for site in house["unjustified_imports"]]
    out += [f"module over {LONG_MODULE} lines: {where} ({lines})" for where, lines in house["long_modules_not_allowed"]]
    return out


if __name__ == "__main__":
    sys.exit(main())
