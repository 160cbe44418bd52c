"""The engine's shape (docs/architecture.md): no import cycle, no upward import, bpy never imported.

Imports are read with ast from every module under engine/, at the top level and inside functions
alike: a lazy import is still a dependency, and hiding an upward one inside a function does not
make it right. The rules name the package and the module at fault.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Low to high, as docs/architecture.md draws them. A package may import packages of lower layers;
# in a "shared" layer its packages may also import each other (small helpers of one level),
# elsewhere packages of one layer stay independent (rig and formats, avatar and motion).
LAYERS: list[tuple[str, bool, tuple[str, ...]]] = [
    ("foundation", True, ("__init__", "errors", "paths", "versions", "colour", "fileio", "options", "protocol")),
    ("data and models", True, ("models", "codecs", "resample", "recipe", "images", "person", "intrinsics",
                               "checkpoints", "runtime", "model_cache", "bundle")),
    ("prediction", False, ("predict",)),
    ("surface and file formats", False, ("geometry", "formats")),
    ("rig", False, ("rig",)),
    ("synthetic people", False, ("synthetic",)),
    ("products", False, ("avatar", "motion")),
    ("jobs", True, ("jobs", "batch")),  # batch: the Ray Data pipeline over the jobs' stages
    ("entry points", True, ("commands", "serve", "cli", "__main__")),
]
LAYER_OF = {package: (index, name, shared) for index, (name, shared, packages) in enumerate(LAYERS)
            for package in packages}

# (importing module, imported module) pairs allowed against the rules, each with its reason in
# docs/architecture.md. Keep it empty.
ALLOWED_EXCEPTIONS: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ENGINE.rglob("*.py"):
        parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The engine module an import name refers to (engine.a.b.func -> engine.a.b)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import submodule` depends on the submodule, `from pkg import name` on pkg
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            if name == "engine" or name.startswith("engine."):
                target = _resolve(name)
                if target and target != module:
                    found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_engine_package_has_a_layer():
    unplaced = sorted({_package(m) for m in MODULES} - set(LAYER_OF))
    assert not unplaced, f"packages without a layer in docs/architecture.md and LAYERS here: {unplaced}"


def test_no_upward_or_sideways_import():
    problems = []
    for module, targets in sorted(GRAPH.items()):
        source = _package(module)
        level, layer, shared = LAYER_OF.get(source, (None, None, None))
        if level is None:
            continue
        for target in sorted(targets):
            destination = _package(target)
            if destination == source or (module, target) in ALLOWED_EXCEPTIONS:
                continue
            their_level, their_layer, _ = LAYER_OF.get(destination, (None, None, None))
            if their_level is None:
                continue
            if their_level > level:
                problems.append(f"upward: {module} ({layer}) imports {target} ({their_layer})")
            elif their_level == level and not shared:
                problems.append(f"sideways: {module} imports {target}, both in the '{layer}' layer")
    assert not problems, "layering rules of docs/architecture.md broken:\n" + "\n".join(problems)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    graph = {m: {t for t in ts if (m, t) not in ALLOWED_EXCEPTIONS} for m, ts in GRAPH.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles among engine modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_detector_sees_a_cycle_and_an_upward_import():
    # the checks above could pass by seeing nothing: show they see a planted problem
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "engine.avatar" in GRAPH["engine.jobs.avatar"] or any(
        t.startswith("engine.avatar") for t in GRAPH["engine.jobs.build"])
    assert LAYER_OF["rig"][0] < LAYER_OF["avatar"][0]


def test_engine_never_imports_bpy():
    offenders = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "bpy" or n.startswith("bpy.") for n in names):
                offenders.append(module)
    assert not offenders


@pytest.mark.parametrize("package", ["sapiens_blender"])
def test_the_add_on_imports_no_engine_and_no_heavy_library(package):
    root = ENGINE.parent / package
    forbidden = ("engine", "torch", "onnxruntime", "open3d")
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert not offenders
