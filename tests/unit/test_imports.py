"""The import graph: no cycle through the backends, the cluster config and the storage dirs,
every module importable first, and the backend interface free of Ray.

The graph is read from the source (every ``import``, those inside functions too: a lazy import
that closes a cycle is still a cycle), so these tests run in milliseconds, and one subprocess
checks what the source says against real imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import radas

SOURCE = Path(radas.__file__).parent
# The modules of the cycle issue 14 removed (backends/__init__ -> clusters/config ->
# storage/dirs -> backends, closed through sweep.py, which base.py imported), and the modules
# split out of sweep.py.
LOWER_LAYER = (
    "radas.core.spec",
    "radas.storage.home",
    "radas.tune.retries",
    "radas.tune.trial_records",
    "radas.backends",
    "radas.backends.base",
    "radas.clusters.config",
    "radas.storage.dirs",
    "radas.tune.sweep",
)


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = ["radas", *path.relative_to(SOURCE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The radas modules ``path`` imports anywhere in it (not under ``if TYPE_CHECKING``)."""
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while pending:
        node = pending.pop()
        if _type_checking_only(node):
            continue
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # `from radas import _store` imports a module
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    """radas module -> the radas modules it imports. The package ``radas`` itself (the public
    facade, importing everything) is left out: nothing inside radas imports it for a name."""
    files = module_files()
    modules = set(files) - {"radas"}
    return {name: imports_of(files[name], modules) - {name} for name in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_reader_sees_lazy_imports_and_skips_type_checking_ones(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from radas import _store\n"
        "if TYPE_CHECKING:\n"
        "    from radas.clusters.config import ClusterConfig\n"
        "def f():\n"
        "    from radas.backends import get_backend\n"
    )
    modules = {"radas", "radas.storage.store", "radas.backends", "radas.clusters.config"}
    assert imports_of(source, modules) == {"radas.storage.store", "radas.backends"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_through_the_backends_the_cluster_config_or_the_storage_dirs():
    graph = import_graph()
    assert set(LOWER_LAYER) <= set(graph)
    in_cycles = [cycle for cycle in cycles(graph) if set(cycle) & set(LOWER_LAYER)]
    assert in_cycles == [], f"all cycles: {cycles(graph)}"
    # the edges that used to close it go one way now
    assert "radas.backends" not in graph["radas.storage.dirs"]
    assert "radas.storage.dirs" not in graph["radas.clusters.config"]
    assert "radas.tune.sweep" not in graph["radas.backends.base"]
    assert graph["radas.core.spec"] <= {"radas.core.status", "radas.errors"}
    assert graph["radas.storage.home"] <= {"radas.errors"}  # a leaf but for the error it raises


# Run in a fresh interpreter: the package ``radas`` is replaced by an empty one with the same
# path, so that importing a module runs that module's imports and nothing of radas/__init__.
_IMPORT_EACH_FIRST = """
import importlib, sys, types
modules, source = sys.argv[1].split(","), sys.argv[2]

def fresh_radas():
    for name in [name for name in sys.modules if name == "radas" or name.startswith("radas.")]:
        del sys.modules[name]
    package = types.ModuleType("radas")
    package.__path__ = [source]
    sys.modules["radas"] = package

fresh_radas()
importlib.import_module("radas.backends.base")
ray_modules = sorted(name for name in sys.modules if name.split(".")[0] == "ray")
print("ray loaded by radas.backends.base:", ray_modules)
for module in modules:
    fresh_radas()
    try:
        importlib.import_module(module)
    except Exception as err:
        print(f"FAILED {module}: {type(err).__name__}: {err}")
"""


def test_every_module_imports_first_and_the_backend_interface_imports_no_ray():
    modules = [name for name in sorted(module_files()) if name != "radas"]
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_FIRST, ",".join(modules), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ray loaded by radas.backends.base: []"
    assert [line for line in lines if line.startswith("FAILED")] == []
