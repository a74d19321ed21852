"""Dependencies point train -> agents -> nets and train -> envs, checked on the parsed imports."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"agents", "envs", "nets", "train"}
ALLOWED = {
    "nets": {"nets"},
    "envs": {"envs"},
    "agents": {"agents", "nets"},
    "train": OURS,
}


def our_imports(source: str, package: str) -> set[str]:
    """Our top-level packages that `source` (a module of `package`) imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [package]  # `from . import x` / `from .mod import x` stay inside
            elif node.level > 1:
                names = ["<relative import above its package>"]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in OURS or top.startswith("<"):
                found.add(top)
    return found


def test_our_packages_are_the_installed_ones():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(pyproject["tool"]["setuptools"]["packages"]) == OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependency_direction(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules under {package}/"
    bad = {}
    for path in files:
        imported = our_imports(path.read_text(), package)
        if not imported <= ALLOWED[package]:
            bad[str(path.relative_to(ROOT))] = sorted(imported - ALLOWED[package])
    assert not bad, f"{package}/ may import only {sorted(ALLOWED[package])}; found {bad}"


@pytest.mark.parametrize("source, package, expected", [
    ("import torch\nfrom nets import QNetwork", "agents", {"nets"}),
    ("import train.cli", "nets", {"train"}),
    ("def f():\n    from envs.factory import make", "agents", {"envs"}),  # lazy imports count
    ("from . import buffers\nfrom .dqn import td_target", "agents", {"agents"}),
    ("from ..train import cli", "nets", {"<relative import above its package>"}),
    ("import numpy, gymnasium\nfrom torch import nn", "envs", set()),
])
def test_import_parser(source, package, expected):
    # The checker itself must see what the rule forbids, or the layout test could never fail.
    assert our_imports(source, package) == expected
