"""What a user installs: the distribution's name (``radas-ray``; the package index's ``radas`` is
another project), the version read from the one place that writes it, every install hint in
the code naming our distribution, every third-party import declared, and the lock files the
set-up scripts install from matching pyproject's pins.

The source and pyproject.toml are read as text, the installed metadata with importlib.metadata:
milliseconds, no Ray.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import tomlkit

import radas
from radas.core import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(radas.__file__).parent
PROJECT = tomlkit.parse((ROOT / "pyproject.toml").read_text())["project"]
# Imported by radas but rightly not declared: the package is there whenever the import runs.
NOT_DECLARED = {
    "IPython": "imported only inside a running notebook kernel, which brings it",
    "torch": "the user's framework: verify_gpu and .pt artifacts import it where trials run",
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalized(re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0])


def test_the_distribution_is_radas_ray_and_the_command_radas():
    assert PROJECT["name"] == DISTRIBUTION == "radas-ray"
    assert PROJECT["scripts"]["radas"] == "radas.cli:main"
    assert "radas-ray[test]" in PROJECT["optional-dependencies"]["dev"]


def test_the_version_is_pyprojects_read_from_the_installed_metadata():
    assert radas.__version__ == metadata.version("radas-ray") == PROJECT["version"]


def test_every_install_hint_names_radas_ray():
    """Installing the index's ``radas`` brings the plasma-physics package of that name."""
    wrong = re.compile(r"""pip install\s+['"]?radas(?![-\w])""")
    hints = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("src", "tests", "scripts", "examples", "bench")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file() and path.suffix in {".py", ".sh", ""} and "egg-info" not in str(path)
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if wrong.search(line)
    ]
    assert hints == []
    # and the hints that exist name the extra on our distribution
    hint = (SOURCE / "trackers" / "base.py").read_text()
    assert 'pip install "radas-ray[{tracker}]"' in hint


def third_party_imports() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "radas" and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(str(path.relative_to(SOURCE)))
    return found


def test_every_third_party_import_is_declared():
    """fsspec, pyyaml, packaging, aiohttp and botocore came only through Ray or s3fs until
    radas declared them: a release of those that dropped one would have broken radas."""
    declared = {requirement_name(r) for r in PROJECT["dependencies"]}
    for requirements in PROJECT["optional-dependencies"].values():
        declared |= {requirement_name(r) for r in requirements}
    providers = metadata.packages_distributions()
    undeclared = {
        module: files
        for module, files in third_party_imports().items()
        if module not in NOT_DECLARED
        and not declared & {normalized(d) for d in providers.get(module, [module])}
    }
    assert undeclared == {}
    assert {"fsspec", "pyyaml", "packaging", "aiohttp"} <= declared
    assert "gcsfs" in {requirement_name(r) for r in PROJECT["optional-dependencies"]["gcs"]}


def locked(lock: str) -> dict[str, str]:
    pins = re.findall(r"^([\w.-]+)==([^\s;]+)", (ROOT / "locks" / lock).read_text(), re.M)
    return {normalized(name): version for name, version in pins}


def test_the_locks_pin_the_ray_the_suite_is_verified_on():
    from radas.ray_compat.versions import NEWEST, OLDEST

    newest, oldest = (f"{m[0]}.{m[1]}." for m in (NEWEST, OLDEST))
    assert locked("dev.txt")["ray"].startswith(newest)
    assert locked("examples.txt")["ray"] == locked("dev.txt")["ray"]
    assert locked("ray-oldest.txt")["ray"].startswith(oldest)


def test_the_example_lock_agrees_with_the_test_lock():
    """Both scripts install into .venv: run-example.sh after test.sh changes no version."""
    dev, examples = locked("dev.txt"), locked("examples.txt")
    assert {name: dev.get(name) for name in examples} == examples
    # the extras each lock is for are in it
    assert {"scikit-learn", "s3fs", "moto", "pytest", "mkdocs", "build", "twine"} <= set(dev)
    assert "scikit-learn" in examples
    assert "pytest" in locked("ray-oldest.txt")
