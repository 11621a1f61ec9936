"""The import graph as a contract: the layers of the package (bottom to top, each importing
only its own layer and those below), no cycle, Ray's private modules only behind
radas/ray_compat/, a small root, every module importable first, and the backend interface free
of Ray.

The graph is read from the source (every ``import``, those inside functions too: a lazy import
that closes a cycle is still a cycle), so these tests run in milliseconds, and one subprocess
checks what the source says against real imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


def imports_of(
    path: Path, modules: set[str], *, module: str = "", type_checking: bool = False
) -> set[str]:
    """The radas modules ``path`` (the module named ``module``) imports anywhere in it; those
    under ``if TYPE_CHECKING`` only when ``type_checking``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while pending:
        node = pending.pop()
        if _type_checking_only(node) and not type_checking:
            continue
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # from . import x, from ..core import y
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([source] if source else [])])
            for alias in node.names:  # `from radas.storage import store` imports a module
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    return {name for name in found if name in modules}


def import_graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    """radas module -> the radas modules it imports. The package ``radas`` itself (the public
    facade, importing everything) is left out: nothing inside radas imports it for a name."""
    files = module_files()
    modules = set(files) - {"radas"}
    return {
        name: imports_of(files[name], modules, module=name, type_checking=type_checking) - {name}
        for name in modules
    }


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
        "from radas.storage import store\n"
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


# --- the layers (issue 24) -------------------------------------------------------------------
# Bottom to top; a module imports only modules of its own layer and of the layers below. A
# subpackage is one layer entry, so a module split or added inside it needs no change here; a
# new subpackage must be placed. The root modules (radas/*.py) are the facade, but for the two
# leaves everything imports (errors, resources).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "resources", "core"),  # errors, the resource model, plain helpers: no Ray
    ("ray_compat",),  # the one boundary to Ray's internals
    ("storage",),  # stores, atomic files, locks, data dirs, artifacts
    ("clusters",),  # the cluster table, a cluster's shape, local clusters
    ("results",),  # reading a stored experiment
    ("trackers", "notify"),  # wandb/swanlab; the mail at the end (it reads results)
    ("tune",),  # what runs where Tune runs
    ("backends",),  # where an experiment executes
    ("views",),  # what shows an experiment: radas watch, the report page
    ("run",),  # run_experiment's steps (plan, execute, load, analyze)
    ("<root>", "cli"),  # the public facade: __init__, experiment, utils, ...; the command
)
ROOT_LEAVES = {"errors", "resources"}
# The accepted upward imports: (importer, imported, why), each a module or a package prefix.
# Every one is used (test_every_accepted_upward_import_is_still_used): remove one when the code
# no longer needs it.
UPWARD: tuple[tuple[str, str, str], ...] = (
    (
        "radas.core.secrets",
        "radas.ray_compat.private",
        "the secrets a run leaves in Ray's memory are removed there (lazy)",
    ),
    (
        "radas.storage.store",
        "radas.clusters.config",
        "an s3:// store takes its endpoint and credentials from the cluster table (lazy)",
    ),
    (
        "radas.storage.dirs",
        "radas.clusters.config",
        "a cluster's data and results roots are in its entry of the cluster table",
    ),
    (
        "radas.clusters",
        "radas.backends.job_client",
        "a cluster's availability and its stop ask the job server, through the one client "
        "that translates its errors (lazy)",
    ),
    (
        "radas.clusters",
        "radas.backends.ray_jobs",
        "a local cluster is proved up, and stopped with its running jobs, through the "
        "backend's connection (lazy)",
    ),
    (
        "radas.results.tuner",
        "radas.tune.trial",
        "the name of the file a trial's output goes to (OUTPUT_FILE)",
    ),
)
MAX_ROOT_MODULES = 12  # radas/*.py besides __init__: the facade stays small


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return len(LAYERS) - 1  # radas itself
    name = parts[1]
    if len(parts) == 2 and name not in ROOT_LEAVES and not (SOURCE / name).is_dir():
        name = "<root>"
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise AssertionError(f"{module}: the package radas.{name} has no place in LAYERS")


def _covers(prefix: str, module: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def upward_imports() -> dict[tuple[str, str], bool]:
    """Every import of a higher layer -> whether UPWARD accepts it (TYPE_CHECKING ones count)."""
    found = {}
    for module, imported in sorted(import_graph(type_checking=True).items()):
        for target in sorted(imported):
            if layer_of(target) > layer_of(module):
                found[module, target] = any(
                    _covers(importer, module) and _covers(upward, target)
                    for importer, upward, _why in UPWARD
                )
    return found


def test_every_package_has_a_layer():
    packages = {path.parent.name for path in SOURCE.glob("*/__init__.py")}
    placed = {name for layer in LAYERS for name in layer}
    assert packages - placed == set(), "place the new package in LAYERS"
    for module in module_files():
        layer_of(module)
    assert layer_of("radas.errors") == layer_of("radas.core.spec") == 0
    assert layer_of("radas.ray_compat.install") < layer_of("radas.tune.sweep")
    assert layer_of("radas.backends.local") < layer_of("radas.experiment") == layer_of("radas")


def test_no_module_imports_a_higher_layer_but_the_accepted_ones():
    refused = [
        f"{module} -> {target}" for (module, target), ok in upward_imports().items() if not ok
    ]
    assert refused == [], (
        "an import of a higher layer (lazy ones count): move the code down, pass the value "
        "in, or, if it must be, add it to UPWARD with the reason"
    )
    assert len(UPWARD) <= 10


def test_every_accepted_upward_import_is_still_used():
    used = {
        (importer, upward)
        for importer, upward, _why in UPWARD
        for module, target in upward_imports()
        if _covers(importer, module) and _covers(upward, target)
    }
    unused = [
        (importer, upward) for importer, upward, _ in UPWARD if (importer, upward) not in used
    ]
    assert unused == [], "no module needs these any more: remove them from UPWARD"


def test_no_import_cycle_at_all():
    """Lazy imports and those under TYPE_CHECKING count, as in shared/tools/layers.py."""
    assert cycles(import_graph(type_checking=True)) == []


# A Ray module is private when a part of its name starts with "_" (ray._private, ray._raylet,
# ray.air._internal, ray.autoscaler._private, ...) or it is Ray's dashboard (ray.dashboard...).
# Logger names ("ray.dashboard.modules.job.sdk") are strings, not imports: they may be anywhere.
def _private_ray(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "ray" and (
        any(part.startswith("_") and not part.startswith("__") for part in parts[1:])
        or parts[1:2] == ["dashboard"]
    )


def private_ray_uses(path: Path) -> list[str]:
    """The private Ray modules ``path`` imports, or reaches as attributes (``ray._private.x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _private_ray(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [name for name in [node.module, *names] if _private_ray(name)][:1]
        elif isinstance(node, ast.Attribute) and _private_ray(ast.unparse(node)):
            found.append(ast.unparse(node))
    return found


def test_the_graph_reader_sees_ray_private_modules():
    assert _private_ray("ray._private.services") and _private_ray("ray.air._internal")
    assert _private_ray("ray.dashboard.modules.job.sdk") and _private_ray("ray._raylet")
    assert not _private_ray("ray.tune.execution.tune_controller")
    assert not _private_ray("ray.__version__") and not _private_ray("radas._private")


def test_only_ray_compat_uses_rays_private_modules():
    outside = {
        name: uses
        for name, path in module_files().items()
        if not _covers("radas.ray_compat", name) and (uses := private_ray_uses(path))
    }
    assert outside == {}, "reach Ray's private modules through radas/ray_compat/ only"
    inside = [
        path
        for name, path in module_files().items()
        if _covers("radas.ray_compat", name) and private_ray_uses(path)
    ]
    assert inside, "the rule checks something: ray_compat does use Ray's private modules"


def test_the_root_holds_only_the_facade_and_subpackages_name_modules_plainly():
    root = sorted(path.stem for path in SOURCE.glob("*.py") if path.stem != "__init__")
    assert len(root) <= MAX_ROOT_MODULES, root
    # inside a subpackage the package is what is private: no module name starts with "_"
    inner = [name for name in module_files() if name.count(".") >= 2]
    assert [name for name in inner if name.rpartition(".")[2].startswith("_")] == []


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


@pytest.mark.slow
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
