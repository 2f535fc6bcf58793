"""The import rules import-linter's contracts cannot state; `make lint` runs this after `lint-imports`.

Functions: functions/<name>/*.py are no package, so no contract sees them. In AWS a function has the tailor
layer, the runtime layer (Powertools and pydantic, which Powertools' parser and validation build on) and the
Lambda runtime's boto3: anything else it imports fails there however well it runs locally. A function that
ships project modules of its own (its Makefile copies them beside app.py) names them in SHIPPED, and those
modules may reach no project module outside the layer that is not shipped too.

Cycles: in every package of the project (the root packages of [tool.importlinter]), the package's own
__init__ and its children, each child standing for everything under it, must not import each other round
in a circle. Imports inside function bodies count: deferring an import hides a cycle, it does not break
it. Cycles between root packages are the contracts' business.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LAYER = "tailor"
# Top-level modules every function may import, besides the standard library and its own folder's modules.
FUNCTION_IMPORTS = frozenset({LAYER, "aws_lambda_powertools", "boto3", "botocore", "pydantic", "pydantic_core"})
# Project modules a function carries itself, by function folder (see that folder's Makefile).
SHIPPED: Mapping[str, frozenset[str]] = {"train_ltv": frozenset({"tailor_lab.training.ltv"}),
                                         "rebuild_clusters": frozenset({"tailor_lab.training.clusters"}),
                                         "train_embeddings": frozenset({"tailor_lab.training.embeddings"})}


def main() -> int:
    root_packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
    graph = grimp.build_graph(*root_packages, cache_dir=None)
    problems = [*function_import_problems(ROOT / "functions"), *shipped_module_problems(graph, SHIPPED),
                *cycle_problems(graph, root_packages)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def function_import_problems(functions: Path, shipped: Mapping[str, frozenset[str]] = SHIPPED) -> list[str]:
    """One line per import in functions/*/*.py that the function would not find in AWS."""
    problems = []
    for path in sorted(functions.glob("*/*.py")):
        own = {sibling.stem for sibling in path.parent.glob("*.py")}
        allowed = _function_may_import(own, shipped.get(path.parent.name, frozenset()))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                wrong = [alias.name for alias in node.names if not allowed(alias.name)]
            elif isinstance(node, ast.ImportFrom) and node.level:
                wrong = ["." * node.level + (node.module or "")]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                wrong = [] if allowed(node.module) or all(map(allowed, names)) else [node.module]
            else:
                continue
            problems += [f"{_shown(path)}:{node.lineno}: imports {module}, which a function has neither from its "
                         f"layers, the Lambda runtime nor its own folder" for module in wrong]
    return problems


def shipped_module_problems(graph: grimp.ImportGraph, shipped: Mapping[str, frozenset[str]] = SHIPPED) -> list[str]:
    """One line per import, in a module a function ships, of a project module outside the layer it does not ship."""
    problems = []
    for function, modules in sorted(shipped.items()):
        carried = set(modules) | {ancestor for module in modules for ancestor in _ancestors(module)}
        for module in sorted(carried & graph.modules):
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                if imported.split(".")[0] != LAYER and imported not in carried:
                    problems.append(f"{module} imports {imported}, which functions/{function} does not ship "
                                    f"(SHIPPED in {_shown(Path(__file__))})")
    return problems


def cycle_problems(graph: grimp.ImportGraph, root_packages: Iterable[str]) -> list[str]:
    """One paragraph per import cycle: the package, the circle of its parts, and one import for each step."""
    problems = []
    packages = [module for root in root_packages for module in [root, *sorted(graph.find_descendants(root))]]
    for package in packages:
        if graph.find_children(package):
            problems += [_describe(graph, package, cycle, step) for cycle, step in _sibling_cycles(graph, package)]
    return problems


def _function_may_import(own: set[str], shipped: frozenset[str]) -> Callable[[str], bool]:
    def allowed(module: str) -> bool:
        top = module.split(".")[0]
        return top in FUNCTION_IMPORTS or top in sys.stdlib_module_names or top in own or module in shipped
    return allowed


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def _sibling_cycles(graph: grimp.ImportGraph, package: str):
    """The cycles among `package` and its children, each found as the shortest way back over one of its imports,
    with one import (importer, imported) for each step between parts."""
    part_of = {package: package}
    for child in graph.find_children(package):
        part_of.update({module: child for module in [child, *graph.find_descendants(child)]})
    step: dict[tuple[str, str], tuple[str, str]] = {}
    for module in sorted(part_of):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            ends = (part_of[module], part_of.get(imported))
            if ends[1] is not None and ends[0] != ends[1]:
                step.setdefault(ends, (module, imported))
    following: dict[str, list[str]] = {}
    for start, end in sorted(step):
        following.setdefault(start, []).append(end)
    seen = set()
    for start, end in sorted(step):
        way_back = _shortest_path(following, end, start)
        if way_back is None:
            continue
        cycle = [start, *way_back[:-1]]
        turn = cycle.index(min(cycle))
        cycle = cycle[turn:] + cycle[:turn]
        if tuple(cycle) not in seen:
            seen.add(tuple(cycle))
            yield cycle, step


def _shortest_path(following: Mapping[str, list[str]], start: str, goal: str) -> list[str] | None:
    came_from = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while came_from[path[-1]] is not None:
                path.append(came_from[path[-1]])
            return path[::-1]
        for following_node in following.get(node, ()):
            if following_node not in came_from:
                came_from[following_node] = node
                queue.append(following_node)
    return None


def _describe(graph: grimp.ImportGraph, package: str, cycle: list[str],
              step: Mapping[tuple[str, str], tuple[str, str]]) -> str:
    def short(part: str) -> str:
        return "(__init__)" if part == package else part.rpartition(".")[2]

    lines = [f"import cycle in {package}: {' -> '.join(short(part) for part in [*cycle, cycle[0]])}"]
    for start, end in zip(cycle, [*cycle[1:], cycle[0]]):
        importer, imported = step[start, end]
        details = graph.get_import_details(importer=importer, imported=imported)
        line = f":{details[0]['line_number']}" if details else ""
        lines.append(f"    {importer}{line} imports {imported}")
    return "\n".join(lines)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    sys.exit(main())
