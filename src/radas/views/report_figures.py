"""The report page's learning curves, drawn with matplotlib's Agg renderer as PNG bytes: one
figure of every trial's curve of the metric over ``training_iteration``, and one small panel
per trial.

Figures are made with ``matplotlib.figure.Figure``, never pyplot: no global state, so a page
can be written from a thread while a sweep runs or a notebook draws.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_OVERLAY_TRIALS = 300  # trials drawn in the figure of every curve
MAX_PANELS = 48  # trials drawn as a panel of their own
PANEL_COLUMNS = 4
PANEL_INCHES = (3.0, 2.2)  # each trial's panel
DPI = 80
ERROR_COLOUR = "#c0392b"


@dataclass
class Curves:
    """The learning curves of one metric, as PNG bytes, and what was left out."""

    overlay: bytes
    panels: bytes
    drawn_trials: int  # in the overlay
    panel_trials: int
    total_trials: int


def draw_curves(
    history: pd.DataFrame, metric: str, statuses: dict[str, str] | None = None
) -> Curves | None:
    """The curves of ``metric`` over ``training_iteration`` per trial of ``history`` (one row
    per report: ``trial_id``, ``training_iteration``, the metrics); None when no trial
    reported ``metric``. ``statuses``: trial id -> status (errored trials are drawn red in
    their panels)."""
    if metric not in history.columns or "trial_id" not in history.columns:
        return None
    frame = history[["trial_id", "training_iteration", metric]].copy()
    frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    frame = frame.dropna(subset=[metric])
    if frame.empty:
        return None
    curves = [
        (str(trial_id), rows.sort_values("training_iteration"))
        for trial_id, rows in frame.groupby("trial_id", sort=True)
    ]
    statuses = statuses or {}
    return Curves(
        overlay=_overlay(curves[:MAX_OVERLAY_TRIALS], metric),
        panels=_panels(curves[:MAX_PANELS], metric, statuses),
        drawn_trials=min(len(curves), MAX_OVERLAY_TRIALS),
        panel_trials=min(len(curves), MAX_PANELS),
        total_trials=len(curves),
    )


def _overlay(curves: list[tuple[str, pd.DataFrame]], metric: str) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 4.2), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    for trial_id, rows in curves:
        axes.plot(
            rows["training_iteration"], rows[metric], marker=".", linewidth=1.2, label=trial_id
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole
    axes.set_xlabel("training_iteration")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} of every trial")
    axes.grid(alpha=0.3)
    if len(curves) <= 12:
        axes.legend(fontsize="small", loc="best")
    return _png(figure)


def _panels(curves: list[tuple[str, pd.DataFrame]], metric: str, statuses: dict[str, str]) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = min(PANEL_COLUMNS, len(curves))
    rows_count = math.ceil(len(curves) / columns)
    width, height = PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows_count
    figure = Figure(figsize=(width, height), dpi=DPI)
    # margins in inches, set by hand: a constrained layout of 48 panels costs seconds
    spacing = dict(hspace=0.55, wspace=0.3, left=0.6 / width, right=1 - 0.15 / width)
    spacing.update(top=1 - 0.3 / height, bottom=0.5 / height)
    grid = figure.subplots(rows_count, columns, squeeze=False, gridspec_kw=spacing)
    for axes in grid.flat[len(curves) :]:
        axes.set_visible(False)
    for axes, (trial_id, rows) in zip(grid.flat, curves, strict=False):
        errored = statuses.get(trial_id) == "ERROR"
        colour = ERROR_COLOUR if errored else "#1f77b4"
        axes.plot(rows["training_iteration"], rows[metric], marker=".", color=colour)
        title = f"{trial_id} ({statuses[trial_id]})" if trial_id in statuses else trial_id
        axes.set_title(title, fontsize=9, color=colour)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    figure.supxlabel("training_iteration", fontsize=9)
    figure.supylabel(metric, fontsize=9)
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
