"""The direction of imports (docs/ARCHITECTURE.md): a test fails on an import against it.

experiments -> nas -> {search_spaces, controllers} -> child_models; inside nas/, each
package may import only the packages below it; Hydra and OmegaConf only at the edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("experiments", "nas", "search_spaces", "controllers", "child_models")
HYDRA = ("hydra", "omegaconf")

# Top-level packages each may import (besides itself and third-party code).
ALLOWED_TOP = {
    "experiments": {"nas", "search_spaces", "controllers", "child_models", "conf"},
    "nas": {"search_spaces", "controllers", "child_models"},
    "search_spaces": {"child_models"},
    "controllers": {"search_spaces"},  # the Decision types only, never a torch module of a child
    "child_models": set(),
}
# Packages of nas/ each may import, lowest first (the layering of docs/ARCHITECTURE.md).
ALLOWED_NAS = {
    "errors": set(),
    "runtime": set(),
    "progress": set(),
    "distributed": set(),
    "data": {"errors", "progress", "io", "distributed"},
    "io": {"errors", "runtime"},
    "latency": {"errors", "runtime", "progress", "distributed", "data", "io"},
    "evaluate": {"errors", "runtime", "progress", "distributed", "data", "io", "latency"},
    "train": {"errors", "runtime", "progress", "distributed", "data", "io", "latency", "evaluate"},
    "search": {"errors", "runtime", "progress", "distributed", "data", "io", "latency", "evaluate", "train"},
    "compress": {"errors", "runtime", "progress", "distributed", "data", "io", "latency", "evaluate", "train"},
}
# The one place under nas/ that may turn config nodes into objects with Hydra.
HYDRA_ALLOWED = {"nas/io/registry.py"}


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute names), including imports inside functions."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def source_files() -> list[Path]:
    return sorted(p for package in PROJECT for p in (ROOT / package).rglob("*.py"))


def violations(path: Path, root: Path = ROOT) -> list[str]:
    rel = path.relative_to(root)
    top = rel.parts[0]
    found = []
    for module in imported_modules(path):
        parts = module.split(".")
        if parts[0] in PROJECT and parts[0] != top and parts[0] not in ALLOWED_TOP[top]:
            found.append(f"{rel} imports {module}: {top} may not import {parts[0]}")
        if top == "nas" and parts[0] == "nas" and len(parts) > 1 and len(rel.parts) > 1:
            here = rel.parts[1].removesuffix(".py")
            there = parts[1]
            if there != here and there not in ALLOWED_NAS.get(here, set()):
                found.append(f"{rel} imports {module}: nas.{here} may not import nas.{there}")
        if top == "nas" and parts[0] in HYDRA and str(rel) not in HYDRA_ALLOWED:
            found.append(f"{rel} imports {module}: Hydra/OmegaConf belong in experiments/ and nas/io/registry.py")
    return found


def test_every_nas_package_is_in_the_layering():
    packages = {p.name.removesuffix(".py") for p in (ROOT / "nas").iterdir()
                if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert packages == set(ALLOWED_NAS), "add the new package to ALLOWED_NAS and docs/ARCHITECTURE.md"


def test_imports_point_down_only():
    found = [v for path in source_files() for v in violations(path)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("package, line, expected", [
    ("child_models", "from search_spaces.base import Arch", "child_models may not import search_spaces"),
    ("nas/io", "import nas.search.loop", "nas.io may not import nas.search"),
    ("nas/train", "from omegaconf import OmegaConf", "Hydra/OmegaConf belong in"),
    ("controllers", "def f():\n    from nas.latency import measure", "controllers may not import nas"),
])
def test_the_check_catches_a_wrong_import(tmp_path, package, line, expected):
    (tmp_path / package).mkdir(parents=True)
    bad = tmp_path / package / "bad.py"
    bad.write_text(line + "\n")
    assert any(expected in v for v in violations(bad, tmp_path))


def test_modules_stay_small():
    """About 400 lines at most: a longer module does more than one job."""
    long = {str(p.relative_to(ROOT)): n for p in source_files()
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"split these by job: {long}"
