"""Each process imports only what its install declares: the API and CPU worker the base dependencies, the
GPU worker `media` at import time and `gpu` only inside the functions that train or run a model backend.

CI installs everything, so an undeclared import would pass every other test and fail only on a
media-only machine; this maps every import of our runtime modules to its distribution instead.
"""

import ast
import importlib.metadata as metadata
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
OURS = {"api", "activities", "workflows", "schemas", "core", "gpu_worker", "ops", "devstack", "bench", "tests"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    declared = [*PROJECT["dependencies"], *(r for e in extras for r in PROJECT["optional-dependencies"][e])]
    return [Requirement(r) for r in declared]


@cache
def installed_with(extras: tuple[str, ...]) -> frozenset[str]:
    """Distributions an install of the project with `extras` brings, transitively (as pip resolves them)."""
    seen: set[str] = set()
    pending = _requirements(extras)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name == "myspinbot":  # an extra naming another (`gpu` includes `media`)
            pending += _requirements(tuple(requirement.extras))
            continue
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            dependency = Requirement(line)
            wanted = ("", *requirement.extras)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in wanted):
                pending.append(dependency)
    return frozenset(seen)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level names imported when the module loads, and those imported inside its functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = (f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef))
    inside = {id(node) for f in functions for node in ast.walk(f)}
    module_level: set[str] = set()
    nested: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        top = {n.split(".")[0] for n in names} - OURS - set(sys.stdlib_module_names) - {"__future__"}
        (nested if id(node) in inside else module_level).update(top)
    return module_level, nested


@cache
def _providers() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions(import_name: str) -> set[str]:
    return {canonicalize_name(d) for d in _providers().get(import_name, [])}


def _undeclared(names: set[str], allowed: frozenset[str]) -> dict[str, set[str]]:
    return {name: dists for name in sorted(names) if not ((dists := _distributions(name)) & allowed)}


def _modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("api", "activities", "workflows", "schemas", "core"), ids=str)
def test_api_and_cpu_worker_modules_need_only_the_base_install(path: Path) -> None:
    allowed = installed_with(("local",) if path.name == "stack.py" else ())  # the local dev stack needs its servers
    module_level, nested = _imports(path)
    assert _undeclared(module_level | nested, allowed) == {}


@pytest.mark.parametrize("path", _modules("gpu_worker"), ids=str)
def test_gpu_worker_modules_need_media_at_import_and_gpu_only_inside_functions(path: Path) -> None:
    module_level, nested = _imports(path)
    if path.name not in _GPU_ONLY_MODULES:
        assert _undeclared(module_level, installed_with(("media",))) == {}
    assert _undeclared(module_level | nested, installed_with(("gpu",))) == {}


# Modules only a configured model backend loads (imported lazily by `build_backends`), so torch or
# coqui-tts at their top is fine.
_GPU_ONLY_MODULES = {"esrgan.py", "coqui_phonemes.py"}


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import torch\n\ndef f():\n    import diffusers\n", encoding="utf-8")
    module_level, nested = _imports(module)
    assert module_level == {"torch"} and nested == {"diffusers"}
    assert set(_undeclared(module_level, installed_with(("media",)))) == {"torch"}
    assert _undeclared(module_level | nested, installed_with(("gpu",))) == {}


@pytest.mark.parametrize("path", _modules("api", "activities", "workflows", "schemas", "core", "gpu_worker"), ids=str)
def test_no_runtime_module_imports_the_tool_packages(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.split(".")[0] in ("ops", "devstack")}
