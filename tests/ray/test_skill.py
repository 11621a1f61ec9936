"""The agent skill's Python code blocks run against the real code, so they cannot drift."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SKILL_DIR = Path(__file__).resolve().parents[2] / "skills" / "radas"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


def run_blocks(blocks: list[str], path: Path) -> None:
    namespace: dict = {"__name__": "__skill__"}
    for number, block in enumerate(blocks, start=1):
        code = compile(
            block, f"{path.name}#block{number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        exec(code, namespace)


@pytest.mark.parametrize(
    "name",
    [pytest.param("SKILL.md", marks=pytest.mark.slow), "REFERENCE.md"],  # SKILL: ~45 s
)
def test_skill_code_blocks_run(name, project):
    path = SKILL_DIR / name
    blocks = python_blocks(path)
    assert blocks, f"{name} has no python blocks"
    try:
        run_blocks(blocks, path)
    finally:
        from radas.clusters import find_local_cluster

        started = find_local_cluster("dev")  # SKILL.md starts a local cluster named dev
        if started is not None:
            started.stop()


def test_skill_front_matter_and_first_prompt():
    text = (SKILL_DIR / "SKILL.md").read_text()
    assert text.startswith("---\nname: radas\ndescription: ")
    assert (
        "Use radas to analyze how learning rate affects learning speed of a simple NN on the "
        "two moons dataset" in text
    )
