"""The house has floors and its imports point one way: down.

Every module of reverie lives in a room (a top-level package or module), every room on a
floor. A module may import its own room or any room on a floor below; never a room above,
never a sibling room on its own floor (consolidation, lifecycle and inversion decide
independently), and no chain of imports comes back to where it started. Imports under
`if TYPE_CHECKING:` and inside functions count too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"

# Bottom to top; each line a floor, the rooms on it.
FLOORS: list[tuple[str, ...]] = [
    # the package itself (its version) and what every room may use: errors, progress, whole files
    ("reverie", "reverie.errors", "reverie.progress", "reverie.whole_files"),
    ("reverie.config",),
    ("reverie.storage", "reverie.logs"),
    ("reverie.ledger",),  # recorded changes: merge, release, undo, forget, revive, drop
    ("reverie.consolidation", "reverie.lifecycle", "reverie.inversion"),  # what to change
    ("reverie.memory", "reverie.display"),  # the library's entry, and how records read
    ("reverie.evaluation", "reverie.daemon", "reverie.importing", "reverie.demo"),
    ("reverie.cli",),
]
FLOOR_OF = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SOURCE / "reverie").rglob("*.py"))}


def room_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def imported(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """reverie modules that `module` imports, wherever the import statement stands."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name in known and name != module:
                yield name


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: set(imported(name, path, set(found))) for name, path in found.items()}


def test_every_room_is_on_a_floor() -> None:
    lost = sorted({room_of(m) for m in modules()} - set(FLOOR_OF))
    assert not lost, f"rooms on no floor (add each to FLOORS in {Path(__file__).name}): {lost}"


def test_no_import_points_up_or_sideways() -> None:
    wrong = []
    for module, targets in graph().items():
        here = room_of(module)
        for target in sorted(targets):
            there = room_of(target)
            if there == here or FLOOR_OF[there] < FLOOR_OF[here]:
                continue
            way = "up" if FLOOR_OF[there] > FLOOR_OF[here] else "sideways"
            wrong.append(f"{module} -> {target} ({way})")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_no_circle_of_imports() -> None:
    edges = graph()
    state: dict[str, str] = {}
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_readme_maps_every_package_and_each_says_what_it_owns() -> None:
    readme = (ROOT / "README.md").read_text()
    for module, path in modules().items():
        if path.name != "__init__.py" or module == "reverie":
            continue
        folder = "src/" + module.replace(".", "/") + "/"
        assert folder in readme, f"README's map misses {folder}"
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 40, f"{module} has no docstring saying what it owns"
