"""The docs site builds with warnings as errors, and a broken link, anchor or page left out of
nav fails that build (as ``scripts/check``, and so CI, runs it). The README's and
CONTRIBUTING's relative links point at files and headings that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs build needs mkdocs (the dev extra)")

ROOT = Path(__file__).resolve().parents[2]


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``project`` (holding mkdocs.yml and docs/), as scripts/check
    runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", project / "docs")
    return project


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    pages = sorted(p.relative_to(ROOT / "docs") for p in (ROOT / "docs").glob("*.md"))
    assert len(pages) >= 10, pages
    for page in pages:  # every page was rendered (omitted_files would have failed otherwise)
        built = tmp_path / "site" / ("" if page.stem == "index" else page.stem) / "index.html"
        assert built.is_file(), page


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("[gone](no-such-page.md)", "no-such-page.md"),
        ("[gone](clusters.md#no-such-heading)", "no-such-heading"),
        ("[gone](#nor-here)", "nor-here"),
    ],
)
def test_a_broken_link_or_anchor_fails_the_build(docs_copy, tmp_path, broken, named):
    assert build(docs_copy, tmp_path / "good").returncode == 0  # the copy builds as it is
    page = docs_copy / "docs" / "cli.md"
    page.write_text(page.read_text() + f"\nSee {broken}.\n")
    done = build(docs_copy, tmp_path / "site")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Aborted with 1 warnings in strict mode" in output, output
    assert named in output and "cli.md" in output


def test_a_page_left_out_of_nav_fails_the_build(docs_copy, tmp_path):
    (docs_copy / "docs" / "orphan.md").write_text("# Orphan\n")
    done = build(docs_copy, tmp_path / "site")
    assert done.returncode != 0
    assert "orphan.md" in done.stdout + done.stderr, done.stdout + done.stderr


LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the headings of ``page`` (the toc extension's slugs)."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slugify(heading.replace("`", ""), "-") for heading in HEADING.findall(text)}


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md"])
def test_relative_links_outside_the_site_resolve(name):
    source = ROOT / name
    links = [link for link in LINK.findall(source.read_text()) if "://" not in link]
    assert links, f"{name} links nothing"
    for link in links:
        path, _, anchor = link.partition("#")
        target = (source.parent / path).resolve()
        assert target.exists(), f"{name}: {link} points at nothing"
        if anchor:
            assert anchor in anchors(target), f"{name}: {link}: no such heading"


def test_every_radas_variable_is_in_the_environment_table():
    """docs/environment.md is the one table of radas's environment variables: a RADAS_* name
    written anywhere in src/radas (a string, a docstring) must be in it, so a new variable
    cannot go undocumented. Python names spelled alike (``RADAS_X = ...``) are not variables."""
    table = (ROOT / "docs" / "environment.md").read_text()
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "radas").rglob("*.py"))
    python_names = set(re.findall(r"^\s*(RADAS_[A-Z0-9_]+)\s*[:=]", source, re.MULTILINE))
    variables = set(re.findall(r"RADAS_[A-Z0-9_]*[A-Z0-9]\b", source)) - python_names
    assert "RADAS_USER" in variables and "RADAS_MAX_WORKING_DIR_MB" in variables
    missing = sorted(name for name in variables if f"`{name}`" not in table)
    assert not missing, f"not in docs/environment.md: {missing}"
