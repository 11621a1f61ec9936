"""A real headless browser for the report page's tests: Debian's chromium, driven by
Playwright's Python package through ``executable_path`` (Playwright's own browser download
cannot reach its host, so ``playwright install`` is never used).

Not on a machine until ``scripts/_browser.sh``'s ``ensure_chromium`` installs it (scripts/test.sh
calls it); without it the tests that need it skip, saying so. Every page opened here records its
console errors, uncaught script errors, dialogs (an ``alert`` a page must never show) and
every request it makes, for the test to check.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = (
    "chromium is not installed here: scripts/_browser.sh's ensure_chromium installs Debian's "
    "chromium and chromium-driver (scripts/test.sh calls it; it needs root)"
)


def chromium_path() -> str | None:
    return shutil.which("chromium")


def needs_chromium() -> pytest.MarkDecorator:
    """Skip a test when chromium is missing, naming the script that installs it."""
    return pytest.mark.skipif(chromium_path() is None, reason=MISSING)


@dataclass
class Recorded:
    """What an opened page did besides showing itself."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def requests_other_than(self, url: str) -> list[str]:
        """Requests for anything but ``url`` itself and the page's own ``data:`` URIs."""
        return [r for r in self.requests if r != url and not r.startswith("data:")]


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        pytest.skip(MISSING)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def open_page(
    launched: Any, path: Path, *, width: int = 1200, height: int = 900
) -> Iterator[tuple[Any, Recorded]]:
    """``path`` loaded from ``file://`` in a fresh page of ``launched``, and what it recorded."""
    recorded = Recorded()
    context = launched.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            recorded.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: recorded.page_errors.append(str(error)))
    page.on("request", lambda request: recorded.requests.append(request.url))

    def dismiss(dialog: Any) -> None:
        recorded.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        yield page, recorded
    finally:
        context.close()


def column_values(page: Any, table: str, header: str) -> list[str]:
    """The text of every cell of ``table``'s column headed ``header``, top to bottom."""
    return page.evaluate(
        """([table, header]) => {
            const t = document.querySelector(table);
            const names = Array.from(t.tHead.rows[0].cells, (c) => c.textContent.trim());
            const column = names.indexOf(header);
            if (column < 0) { throw new Error("no column " + header + " in " + names); }
            return Array.from(t.tBodies[0].rows, (r) => r.cells[column].textContent.trim());
        }""",
        [table, header],
    )


def broken_images(page: Any) -> list[str]:
    """The ``alt`` of every image that did not load (no natural width); [] when all did."""
    return page.evaluate(
        """() => Array.from(document.images)
            .filter((img) => !(img.complete && img.naturalWidth > 0))
            .map((img) => img.alt || img.src.slice(0, 60))"""
    )
