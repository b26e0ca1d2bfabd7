"""The package map of docs/architecture.md holds: derived from the source, not from a list.

Every import statement of every module (those inside functions too) is read with ``ast``; the
test fails on an arrow the map does not allow and names the file and line that draws it.
"""

from __future__ import annotations

import ast
from collections import defaultdict

import pytest

from tests.support.paths import REPO

ROOT = REPO
PACKAGES = ("sarco_core", "edge_app", "model_build", "dashboard", "jetson")

# The arrows docs/architecture.md draws between top-level packages; anything else is refused.
ALLOWED = {
    "sarco_core": set(),
    "edge_app": {"sarco_core"},
    "model_build": {"sarco_core"},
    "dashboard": {"sarco_core"},
    "jetson": set(),
}
# Third-party modules a package must never import (the device and the contracts stay light).
FORBIDDEN_EXTERNAL = {
    "sarco_core": {"torch", "torchvision", "monai", "pandas", "sklearn", "scipy", "sqlalchemy",
                   "fastapi", "onnx", "onnxruntime"},
    "edge_app": {"torch", "torchvision", "monai", "pandas", "sklearn"},
}
# Inside sarco_core, the heavier optional dependencies each stay in one module.
CONFINED = {"paho": "sarco_core/wire/broker.py", "cryptography": "sarco_core/update/signing.py"}


def _imports() -> list[tuple[str, int, str]]:
    """(file relative to the root, line, imported module) for every import of every package."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            module = relative[:-3].replace("/", ".").removesuffix(".__init__")
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found += [(relative, node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:  # relative: resolve against this module's package
                        parts = module.split(".")
                        keep = len(parts) - node.level + (path.name == "__init__.py")
                        base = ".".join(parts[:keep])
                        name = f"{base}.{node.module}" if node.module else base
                    else:
                        name = node.module or ""
                    found.append((relative, node.lineno, name))
    return found


IMPORTS = _imports()


def _top(name: str) -> str:
    return name.split(".")[0]


def _where(edges: list[tuple[str, int, str]]) -> str:
    return "\n".join(f"  {file}:{line}: imports {name}" for file, line, name in edges)


def test_the_source_was_read() -> None:
    importers = {_top(file.replace("/", ".")) for file, _, _ in IMPORTS}
    assert importers >= {"sarco_core", "edge_app", "model_build", "dashboard"}
    assert any(name.startswith("sarco_core.") for _, _, name in IMPORTS)


def test_no_arrow_outside_the_map() -> None:
    wrong = [(file, line, name) for file, line, name in IMPORTS
             if _top(name) in PACKAGES and _top(name) != _top(file.replace("/", "."))
             and _top(name) not in ALLOWED[_top(file.replace("/", "."))]]
    assert not wrong, "imports the architecture does not allow (docs/architecture.md):\n" + \
        _where(wrong)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], tuple[str, int, str]] = {}
    for file, line, name in IMPORTS:
        source, target = _top(file.replace("/", ".")), _top(name)
        if target in PACKAGES and target != source:
            graph[source].add(target)
            where.setdefault((source, target), (file, line, name))

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for following in sorted(graph[node]):
                if following == start:
                    return path + [start]
                if following not in path:
                    stack.append((following, path + [following]))
        return None

    for package in PACKAGES:
        cycle = cycle_from(package)
        assert cycle is None, "package cycle " + " -> ".join(cycle) + ":\n" + _where(
            [where[pair] for pair in zip(cycle, cycle[1:])])


@pytest.mark.parametrize("package, refused", [
    ("dashboard", ("edge_app", "model_build")),
    # the workstation drives the device app only as a program (the study's replay runs
    # `python -m edge_app.cli replay`), never by importing it
    ("model_build", ("edge_app", "dashboard")),
    ("edge_app", ("model_build", "dashboard")),
    ("sarco_core", ("edge_app", "model_build", "dashboard", "jetson")),
])
def test_package_does_not_import(package: str, refused: tuple[str, ...]) -> None:
    wrong = [(file, line, name) for file, line, name in IMPORTS
             if file.startswith(f"{package}/") and _top(name) in refused]
    assert not wrong, f"{package} must not import {', '.join(refused)}:\n" + _where(wrong)


def test_calibration_imports_no_device_module() -> None:
    wrong = [(file, line, name) for file, line, name in IMPORTS
             if file.startswith("model_build/calibration/") and _top(name) == "edge_app"]
    assert not wrong, "calibration uses sarco_core, not the device app:\n" + _where(wrong)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_EXTERNAL))
def test_light_packages_stay_light(package: str) -> None:
    wrong = [(file, line, name) for file, line, name in IMPORTS
             if file.startswith(f"{package}/") and _top(name) in FORBIDDEN_EXTERNAL[package]]
    assert not wrong, f"{package} must stay light:\n" + _where(wrong)


def test_optional_dependencies_of_the_core_stay_in_one_module() -> None:
    wrong = [(file, line, name) for file, line, name in IMPORTS
             if file.startswith("sarco_core/") and _top(name) in CONFINED
             and file != CONFINED[_top(name)]]
    assert not wrong, "paho-mqtt and cryptography each belong to one sarco_core module:\n" + \
        _where(wrong)


def test_no_two_public_classes_share_a_name() -> None:
    """One name, one meaning (docs/architecture.md): a class is found by its name alone."""
    defined: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    defined[node.name].append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    shared = {name: places for name, places in defined.items() if len(places) > 1}
    assert not shared, "public classes that share a name:\n" + "\n".join(
        f"  {name}: {', '.join(places)}" for name, places in sorted(shared.items()))


def _imports_of(folder: str) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=relative)):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((relative, node.lineno, node.module))
            elif isinstance(node, ast.Import):
                found += [(relative, node.lineno, alias.name) for alias in node.names]
    return found


def test_benchmarks_import_no_test_module_and_tests_import_no_test_module() -> None:
    """What tests and benchmarks share lives in testkit/ (and tests/support/ for tests only)."""
    wrong = [(file, line, name) for file, line, name in _imports_of("benchmarks")
             if _top(name) == "tests"]
    wrong += [(file, line, name) for file, line, name in _imports_of("tests")
              if name.startswith("tests.") and name.split(".")[-1].startswith("test_")]
    assert not wrong, "a test module imported (move the helper to tests/support or testkit):\n" + \
        _where(wrong)
