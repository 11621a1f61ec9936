"""The report page of an experiment: one self-contained HTML file, readable offline.

``write_report(experiment_path)`` reads the experiment (``report_data``), draws the learning
curves (``report_figures``) and writes the page: its status line, a table of the trials
(click a column's header to sort by it), the figures the run saved and each trial's learning
curve, and the errored trials' tracebacks. Styles and the sorting script are inline and the
images are ``data:`` URIs; the page's Content-Security-Policy lets it load nothing else, so it
reads the same from a laptop without network, an e-mail attachment or an agent's file read.

>>> import radas.views.report_page as report_page
>>> report_page.write_report("~/.radas/ray-results/alice/_home_alice_proj_lr")  # doctest: +SKIP
'/home/alice/.radas/ray-results/alice/_home_alice_proj_lr/report.html'

The page is written whole (a temporary file, then a rename), so a browser or a sweep that
rewrites it while it runs never sees half a page.
"""

from __future__ import annotations

import base64
import math
import numbers
import os
import re
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any

from radas.core import VERSION
from radas.errors import StorageError
from radas.storage import files as _files
from radas.storage import store as _store
from radas.views.report_data import ReportData, TrialRow, read_report_data
from radas.views.report_figures import draw_curves

REPORT_FILE = "report.html"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def write_report(
    experiment_path: _store.AnyPath,
    out_path: _store.AnyPath | None = None,
    *,
    job_running: Callable[[], bool] | None = None,
    refresh_s: int | None = None,
) -> str:
    """Write the report page of the experiment stored at ``experiment_path`` (a path or an
    ``s3://`` URI) to ``out_path`` and return where it went.

    ``out_path`` None: ``report.html`` in the experiment's own folder when that is a folder
    this process can write, else ``report-<experiment name>.html`` in the current folder.
    ``job_running``: whether its cluster job runs now (``Backend.running_probe``).
    ``refresh_s``: while the experiment runs, the page reloads itself this often (for a page
    rewritten during the sweep).

    >>> write_report("s3://lab/results/alice/_home_alice_proj_lr", "lr.html")  # doctest: +SKIP
    'lr.html'
    """
    data = read_report_data(experiment_path, job_running=job_running)
    page = render_page(data, refresh_s=refresh_s)
    target = _store.location(out_path) if out_path is not None else default_report_path(data)
    try:
        _files.write_atomic(target, page)
    except OSError as err:
        raise StorageError(
            f"Cannot write the report page to {target} ({err.strerror or err}): give a file "
            "in a folder this user can write (radas report -o FILE; out_path= in Python)."
        ) from err
    return str(target)


def default_report_path(data: ReportData) -> _store.Location:
    """``report.html`` next to the experiment's results when they are a folder this process
    can write; else ``report-<name>.html`` in the current folder (results in an object store,
    or another user's read-only folder)."""
    folder = _store.location(data.experiment_path)
    if not isinstance(folder, _store.UriPath) and os.access(folder, os.W_OK | os.X_OK):
        return folder / REPORT_FILE
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", data.name)
    return _store.location(os.path.abspath(f"report-{safe_name}.html"))


def render_page(data: ReportData, *, refresh_s: int | None = None) -> str:
    """The whole HTML page of ``data``."""
    refresh = (
        f'<meta http-equiv="refresh" content="{int(refresh_s)}">\n'
        if refresh_s and data.running
        else ""
    )
    sections = [
        _header(data),
        _notes(data),
        _trial_table(data),
        _figures(data),
        _errors(data),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"{refresh}<title>radas report: {escape(data.name)}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _header(data: ReportData) -> str:
    counts = data.counts
    counted = (
        f"{counts.finished} finished, {counts.errored} errored, {counts.total} trials"
        if counts is not None
        else "trials not readable"
    )
    updated = data.last_update.strftime("%Y-%m-%d %H:%M:%S") if data.last_update else "unknown"
    metric = (
        f"metric <b>{escape(data.metric)}</b>"
        + (f" ({escape(data.mode)})" if data.mode else "")
        + f": {escape(data.metric_source)}"
        if data.metric
        else "no numeric metric reported yet"
    )
    partial = (
        '<p class="partial">The experiment is still running: this page shows what was '
        "reported so far.</p>\n"
        if data.running
        else ""
    )
    written = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"<header>\n<h1>{escape(data.name)}</h1>\n"
        f'<p class="status" id="status"><span class="state">{escape(data.status)}</span> · '
        f'<span id="counts">{counted}</span> · last updated <span id="updated">{updated}'
        f'</span> · stored at <code id="stored">{escape(data.experiment_path)}</code></p>\n'
        f'<p class="meta">{metric} · page written {written} by radas {escape(VERSION)}</p>\n'
        f"{partial}</header>"
    )


def _notes(data: ReportData) -> str:
    if not data.notes:
        return ""
    items = "\n".join(f"<li>{escape(note)}</li>" for note in data.notes)
    return (
        '<section id="notes" class="notes">\n<h2>What could not be read</h2>\n'
        "<p>Some of the experiment's files are damaged or missing; the page shows "
        f"everything else.</p>\n<ul>\n{items}\n</ul>\n</section>"
    )


def _trial_table(data: ReportData) -> str:
    """The trials, one row each: id, status, reports, config values, each metric's last
    value and the best of the experiment's metric. A header's ``data-type`` says how its
    column sorts; each cell's ``data-value`` is the value it sorts by."""
    if not data.trials:
        return (
            '<section id="trials">\n<h2>Trials</h2>\n'
            '<p class="empty">No trials stored yet.</p>\n</section>'
        )
    best = f"{data.metric} (best, {data.mode})" if data.mode and data.metric else None
    columns: list[tuple[str, Callable[[TrialRow], Any]]] = [
        ("trial", lambda trial: trial.trial_id),
        ("status", lambda trial: trial.status),
        ("reports", lambda trial: trial.reports),
        *((f"config/{key}", _getter("config", key)) for key in data.config_keys),
        *((f"{metric} (last)", _getter("last", metric)) for metric in data.metrics),
        *([(best, lambda trial: trial.best)] if best else []),
    ]
    header = "".join(
        f'<th scope="col" data-type="{_column_type(data.trials, value)}" tabindex="0">'
        f"{escape(name)}</th>"
        for name, value in columns
    )
    rows = []
    for trial in data.trials:
        cells = [_cell(value(trial)) for _, value in columns]
        if trial.status == "ERROR":
            cells[1] = (
                f'<td data-value="ERROR"><a href="#error-{escape(trial.trial_id)}">ERROR</a></td>'
            )
        status_class = escape(trial.status.lower())
        rows.append(f'<tr class="{status_class}">{"".join(cells)}</tr>')
    reported = "" if data.metrics else '<p class="empty">No reports yet.</p>\n'
    return (
        '<section id="trials">\n<h2>Trials</h2>\n'
        f'<p class="hint">{len(data.trials)} trials; click a column\'s header to sort by it '
        "(again: the other way).</p>\n"
        f"{reported}"
        f'<table id="trial-table" class="sortable">\n<thead><tr>{header}</tr></thead>\n'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table>\n</section>"
    )


def _getter(attribute: str, key: str) -> Callable[[TrialRow], Any]:
    return lambda trial: getattr(trial, attribute).get(key)


def _column_type(trials: list[TrialRow], value: Callable[[TrialRow], Any]) -> str:
    present = [value(trial) for trial in trials if not _missing(value(trial))]
    return "number" if present and all(_is_number(v) for v in present) else "text"


def _cell(value: Any) -> str:
    if _missing(value):
        return '<td data-value=""></td>'
    if _is_number(value):
        return f'<td class="num" data-value="{float(value)!r}">{_format_number(value)}</td>'
    return f'<td data-value="{escape(str(value))}">{escape(str(value))}</td>'


def _format_number(value: Any) -> str:
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.6g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or value != value
    except (TypeError, ValueError):
        return False


def _figures(data: ReportData) -> str:
    parts = ['<section id="figures">\n<h2>Figures</h2>']
    parts.append("<h3>Learning curves</h3>")
    curves = (
        draw_curves(data.history, data.metric, {t.trial_id: t.status for t in data.trials})
        if data.metric
        else None
    )
    if curves is None:
        parts.append('<p class="empty">No reports yet: no learning curve to draw.</p>')
    else:
        parts.append(
            f"<p>{escape(str(data.metric))} over training_iteration, "
            f"{escape(data.metric_source)}.</p>"
        )
        parts.append(_image(curves.overlay, "image/png", f"{data.metric} of every trial"))
        if curves.drawn_trials < curves.total_trials:
            parts.append(
                f'<p class="hint">The first {curves.drawn_trials} of {curves.total_trials} '
                "trials are drawn.</p>"
            )
        parts.append("<h3>Each trial</h3>")
        parts.append(_image(curves.panels, "image/png", f"{data.metric} of each trial"))
        if curves.panel_trials < curves.total_trials:
            parts.append(
                f'<p class="hint">Panels of the first {curves.panel_trials} of '
                f"{curves.total_trials} trials; the table has every trial.</p>"
            )
    if data.figures:
        parts.append("<h3>Figures the run saved</h3>")
    for figure in data.figures:
        if figure.media_type is None:
            parts.append(
                f'<p class="hint">{escape(figure.name)}: not shown here (open '
                f"<code>{escape(figure.path)}</code>).</p>"
            )
            continue
        image = _image(figure.content, figure.media_type, figure.name)
        parts.append(
            f"<figure>{image}<figcaption><code>{escape(figure.path)}</code></figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _image(content: bytes, media_type: str, alt: str) -> str:
    encoded = base64.b64encode(content).decode("ascii")
    return f'<img src="data:{media_type};base64,{encoded}" alt="{escape(alt)}">'


def _errors(data: ReportData) -> str:
    if not data.tracebacks:
        return ""
    summaries = {trial.trial_id: trial.error for trial in data.trials}
    blocks = []
    for trial_id, traceback in data.tracebacks.items():
        summary = summaries.get(trial_id) or "errored"
        blocks.append(
            f'<details id="error-{escape(trial_id)}" class="error">'
            f"<summary><b>{escape(trial_id)}</b>: {escape(summary)}</summary>\n"
            f"<pre>{escape(traceback)}</pre></details>"
        )
    return (
        f'<section id="errors">\n<h2>Errored trials ({len(blocks)})</h2>\n'
        '<p class="hint">Open one to read its traceback.</p>\n'
        f"{chr(10).join(blocks)}\n</section>"
    )


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
  max-width: 1200px; padding: 0 1em; color: #1d2330; background: #fff; }
h1 { margin: 0 0 .2em; font-size: 1.6em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #d8dde6; padding-bottom: .2em; }
h3 { margin-bottom: .3em; }
code { font-size: .92em; background: #f2f4f8; padding: 0 .25em; border-radius: 3px; }
.status { font-size: 1.05em; }
.status .state { font-weight: 600; }
.meta, .hint, .empty { color: #5b6475; }
.partial { background: #fff6d6; border: 1px solid #e8cf6a; padding: .4em .7em; }
.notes { background: #fdecea; border: 1px solid #e5a29b; padding: .2em 1em .6em; }
.notes h2 { border: 0; margin-top: .4em; }
table { border-collapse: collapse; font-size: .92em; }
th, td { border: 1px solid #d8dde6; padding: .25em .55em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f4f8; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.error td { background: #fdecea; }
tr.running td, tr.pending td { color: #5b6475; }
img { max-width: 100%; height: auto; border: 1px solid #e3e7ee; }
figure { margin: 1em 0; }
figure img { max-width: min(100%, 720px); }
details.error { border: 1px solid #e5a29b; border-radius: 4px; margin: .5em 0;
  padding: .3em .7em; }
details.error pre { overflow-x: auto; font-size: .85em; background: #faf7f7; padding: .6em; }
summary { cursor: pointer; }
"""

# Sorting without a library: a header's click sorts its column (numbers as numbers, empty
# cells last), a second click the other way; aria-sort says which way it is sorted.
SORT_SCRIPT = """
(function () {
  "use strict";
  function sortTable(table, header, column) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var numeric = header.getAttribute("data-type") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, index) {
      var raw = row.cells[column].getAttribute("data-value");
      return { row: row, index: index, empty: raw === "",
               key: numeric ? parseFloat(raw) : raw };
    });
    keyed.sort(function (a, b) {
      if (a.empty !== b.empty) { return a.empty ? 1 : -1; }
      var order = numeric ? a.key - b.key : a.key.localeCompare(b.key, undefined,
                                                                 { numeric: true });
      if (!ascending) { order = -order; }
      return order || a.index - b.index;
    });
    keyed.forEach(function (item) { body.appendChild(item.row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.addEventListener("click", function () { sortTable(table, header, column); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortTable(table, header, column);
        }
      });
    });
  });
})();
"""
