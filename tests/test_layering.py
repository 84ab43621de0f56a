"""Imports flow one way: cli -> serve -> batcher -> translate -> workers -> search -> config."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nmt"

# a module may import only modules of a lower rank
RANK = {
    "nmt": 0,
    "atomic": 0,
    "heap": 0,
    "procs": 0,
    "config": 1,
    "distributed": 1,
    "tokenizer": 1,
    "toy": 1,
    "corpus": 1,
    "metrics": 1,
    "render": 1,
    "heatmaps": 2,
    "curves": 2,
    "buckets": 2,
    "figures": 2,
    "batching": 2,
    "schedule": 2,
    "encoding": 2,
    "runlog": 2,
    "cache": 3,
    "prepare": 4,
    "epochs": 5,
    "candidates": 2,
    "progress": 2,
    "rundir": 2,
    "encoder": 2,
    "attention": 2,
    "output": 2,
    "decoder": 3,
    "transformer": 3,
    "model": 4,
    "search": 5,
    "ensemble": 5,
    "checkpoint": 5,
    "quantize": 5,
    "workers": 6,
    "outfile": 2,
    "stream": 6,
    "export": 6,
    "average": 6,
    "gradflow": 6,
    "exposure": 6,
    "translate": 7,
    "validation": 6,
    "train": 7,
    "batcher": 8,
    "serve": 9,
    "cli_common": 9,
    "cli_data": 10,
    "cli_train": 10,
    "cli_translate": 10,
    "cli_models": 10,
    "cli_eval": 10,
    "cli": 11,
    "__main__": 12,
}


def nmt_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nmt"):
            found.add(node.module.split(".")[1] if "." in node.module else "nmt")
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] if "." in a.name else "nmt"
                for a in node.names
                if a.name.startswith("nmt")
            )
    return found


def test_every_module_has_a_rank():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= set(RANK), f"give these modules a rank: {modules - set(RANK)}"


def test_imports_only_go_down():
    for path in PACKAGE.glob("*.py"):
        name = "nmt" if path.stem == "__init__" else path.stem
        for target in nmt_imports(path) - {name}:
            assert RANK[target] < RANK[name], f"nmt.{name} imports nmt.{target} (upward)"
