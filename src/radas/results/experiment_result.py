"""``ExperimentResult``: what ``run_experiment`` returns, typed, and read as the dict it was.

``result.df`` and ``result["df"]`` are the same value; ``list(result)``, ``dict(result)``,
``result.get("fig")`` and ``"plot" in result`` work as on a dict with the keys ``KEYS``, so
scripts written against the dict keep working.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from radas.core.spec import RunTarget, SweepOutcome

if TYPE_CHECKING:
    import pandas as pd

    from radas.results.tuner import Tuner

# the keys of the mapping view (the dict run_experiment returned before it was typed)
KEYS = (
    "df",
    "fig",
    "plot",
    "fig_path",
    "tuner",
    "experiment_path",
    "full_name",
    "run_with",
    "run_choice",
    "outcome",
    "partial",
)


@dataclass(eq=False)
class ExperimentResult(Mapping[str, Any]):
    """An experiment as ``run_experiment`` leaves it.

    - ``df``: the processed DataFrame (None without "analyze" in ``dos``, or when the
      analysis failed before it: ``AnalysisError.results``);
    - ``fig``: the matplotlib Figure, ``plot``: what ``plot_fn`` returned (both None without
      ``plot_fn``); ``fig_path``: where the figure was saved (None when not saved);
    - ``tuner``: ``radas.Tuner`` of the stored experiment; ``experiment_path`` (a path or a
      URI) and ``full_name``: where it is stored and under which name;
    - ``run_with`` (``target`` parsed), ``run_choice``: where and how it ran (None when only
      analyzed by ``radas analyze URI``); ``outcome``: the trial counts of this run
      (``SweepOutcome``; None with ``dos=["analyze"]``);
    - ``partial``: True when the experiment was still running as it was read.

    >>> result = ExperimentResult(experiment_path="/r/alice/x", full_name="x", tuner=None)
    >>> result["full_name"], "plot" in result, result.get("df")
    ('x', True, None)
    """

    experiment_path: str
    full_name: str
    tuner: Tuner
    target: RunTarget | None = None
    run_choice: str | None = None
    outcome: SweepOutcome | None = None
    partial: bool = False
    df: pd.DataFrame | None = None
    fig: Any = None  # a matplotlib Figure
    plot: Any = None
    fig_path: str | None = None

    @property
    def run_with(self) -> str | None:
        """``"local"`` or ``"cluster:<name>"``: where it ran (None: not run by this call's
        ``run_with``, e.g. ``radas analyze URI``)."""
        return None if self.target is None else str(self.target)

    def __getitem__(self, key: str) -> Any:
        if key not in KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(KEYS)

    def __len__(self) -> int:
        return len(KEYS)
