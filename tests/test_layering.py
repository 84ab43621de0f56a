"""The package's layout as rules between its parts: the root (the textbook) and its wings.

The wings are ordered; a wing may import the root and the wings before it, never one after
it. The root may import the wings the training loop stands on (`data`, `runs`) and no wing
after them. Nothing imports the CLI. No module imports another in a cycle, through any wing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nmt"

# the wings in the order in which they may import each other
WINGS = ("data", "runtime", "runs", "translation", "analysis", "serving", "cli")
ROOT_MAY_IMPORT = {"data", "runs"}  # what the training loop reads and writes


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def nmt_imports(path: Path) -> set[str]:
    """The nmt modules `path` imports (at the top or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nmt"):
            found.add(node.module)
            # `from nmt.cli import data` imports the module nmt.cli.data
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nmt"))
    return found & set(modules())


def wing(module: str) -> str | None:
    """The wing a module belongs to; None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else None


def test_every_subpackage_is_a_wing_with_a_docstring():
    for path in PACKAGE.glob("*/__init__.py"):
        assert path.parent.name in WINGS, f"{path.parent} is not in WINGS"
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path} says what it holds"


def test_wings_import_only_the_root_and_wings_before_them():
    for name, path in modules().items():
        mine = wing(name)
        for target in nmt_imports(path):
            theirs = wing(target)
            if theirs is None or theirs == mine:
                continue
            if mine is None:
                assert theirs in ROOT_MAY_IMPORT or name == "nmt.__main__", (
                    f"{name} (the root) imports {target} (wing {theirs})"
                )
            else:
                assert WINGS.index(theirs) < WINGS.index(mine), (
                    f"{name} (wing {mine}) imports {target} (wing {theirs}, after it)"
                )


def test_nothing_imports_the_cli():
    for name, path in modules().items():
        if wing(name) == "cli" or name == "nmt.__main__":
            continue
        cli = {t for t in nmt_imports(path) if wing(t) == "cli"}
        assert not cli, f"{name} imports {cli}"


def test_no_import_cycles():
    graph = {name: nmt_imports(path) - {name, "nmt"} for name, path in modules().items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name) :] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in graph[name]:
            # a package's __init__ importing its own modules (nmt.cli) is not a cycle
            if not target.startswith(name + "."):
                visit(target, [*trail, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_the_public_names_are_not_module_names():
    """`from nmt import X` must give the same object whether or not the module nmt.X was
    imported before (a submodule of that name would shadow the lazy name once imported)."""
    import nmt

    clash = {name for name in nmt._PUBLIC if (PACKAGE / f"{name}.py").exists()}
    clash |= {name for name in nmt._PUBLIC if (PACKAGE / name).is_dir()}
    assert not clash
    for name in nmt._PUBLIC:
        assert getattr(nmt, name) is not None
