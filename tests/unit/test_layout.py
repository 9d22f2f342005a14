"""The package layout holds: no import cycle between rooms, nothing imports upwards.

A room is a top-level module of pipeline/ or one of its folders (console/, crm/, delivery/,
devtools/, ingest/, observability/, operations/, streams/), agents/ or schemas/.
`python -m tests.unit.test_layout [ROOT]` prints the rooms by level (docs/layout/ holds that
sheet from before and after each move).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Read and written by the worker for every call; none of them may know the operator side.
DELIVERY_PATH = {"pipeline/delivery/", "pipeline/streams/", "pipeline/signing.py", "pipeline/crm/"}
ABOVE_DELIVERY = {"pipeline/operations/", "pipeline/console/", "pipeline/devtools/",
                  "pipeline/runtime.py", "pipeline/__main__.py", "agents/"}


def _room(module: str, folders: set[str]) -> str | None:
    parts = module.split(".")
    if parts[0] in ("agents", "schemas"):
        return parts[0] + "/"
    if parts[0] != "pipeline" or len(parts) == 1:
        return None
    return f"pipeline/{parts[1]}/" if parts[1] in folders else f"pipeline/{parts[1]}.py"


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import"  # the project has none
            yield node.module or ""
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Room -> the rooms it imports (at module level or inside a function)."""
    folders = {p.name for p in (root / "pipeline").iterdir()
               if p.is_dir() and p.name != "__pycache__"}
    graph: dict[str, set[str]] = {}
    for path in sorted([*root.glob("pipeline/**/*.py"), *root.glob("agents/**/*.py"),
                        *root.glob("schemas/**/*.py")]):
        room = _room(".".join(path.relative_to(root).with_suffix("").parts), folders)
        if room is None:
            continue
        edges = graph.setdefault(room, set())
        edges |= {r for name in _imports(path) if (r := _room(name, folders)) and r != room}
    return graph


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """1 for a room that imports no room, else one above the highest it imports (no cycles)."""
    level: dict[str, int] = {}

    def of(room: str, path: tuple[str, ...]) -> int:
        if room in path:
            raise AssertionError(" -> ".join([*path[path.index(room):], room]))
        if room not in level:
            level[room] = 1 + max((of(r, (*path, room)) for r in graph.get(room, ())),
                                  default=0)
        return level[room]

    for room in graph:
        of(room, ())
    return level


def test_no_cycle_between_rooms() -> None:
    levels(import_graph())  # raises naming the cycle


def test_the_delivery_path_imports_nothing_above_it() -> None:
    graph = import_graph()
    upward = {room: graph[room] & ABOVE_DELIVERY for room in DELIVERY_PATH if room in graph}
    assert not {room: above for room, above in upward.items() if above}
    assert DELIVERY_PATH <= set(graph)  # every name above is a room that is there


def test_observability_imports_only_leaves() -> None:
    graph = import_graph()
    assert graph["pipeline/observability/"] <= {"pipeline/streams/"}


def sheet(root: Path) -> str:
    graph = import_graph(root)
    level = levels(graph)
    lines = [f"{len(graph)} rooms on {max(level.values())} levels, "
             f"{sum(len(e) for e in graph.values())} imports between rooms, no cycle"]
    for n in sorted(set(level.values()), reverse=True):
        lines.append(f"level {n:2}: " + ", ".join(sorted(r for r in level if level[r] == n)))
    return "\n".join(lines)


if __name__ == "__main__":
    print(sheet(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
