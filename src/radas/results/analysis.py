"""From a stored experiment to a processed DataFrame and a seaborn figure.

Two steps, data first: ``make_dataframe`` computes the frame (tested on values), ``plot``
draws it. Nothing here talks to Ray or a cluster; it reads through ``radas.Tuner``.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from radas.core.console import warn
from radas.errors import InvalidArgumentError, RadasError
from radas.results.tuner import Tuner

PLOT_FORMATS = ("png", "pdf", "svg")
# plot_kwargs whose values are functions by nature; they are passed through, not called on df.
FUNCTION_VALUED_KWARGS = frozenset({"estimator", "errorbar", "ci", "func", "aggfunc", "agg"})


@dataclass
class AnalysisOptions:
    """The analysis arguments of ``run_experiment`` (see its docstring)."""

    tuner_to_df_fn: Callable[[Tuner], pd.DataFrame] | None = None
    process_df_fn: Callable[..., pd.DataFrame] | None = None
    process_df_fn_kwargs: dict[str, Any] = field(default_factory=dict)
    rename_mapping: dict[str, str] | None = None
    matplotlib_rcParams_update: dict[str, Any] | None = None
    process_sns_fn: Callable[[], Any] | None = None
    plot_fn: Callable[..., Any] | None = None
    plot_kwargs: dict[str, Any] = field(default_factory=dict)
    process_g_fn: Callable[[Any], Any] | None = None
    plot_format: str | None = None
    plot_path: str | Path | None = None

    def __post_init__(self) -> None:
        for name in ("tuner_to_df_fn", "process_df_fn", "process_sns_fn", "plot_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise InvalidArgumentError(
                    f"{name} must be callable, got {type(value).__name__}: for example "
                    + ("plot_fn=sns.lineplot." if name == "plot_fn" else f"{name}=my_function.")
                )
        if self.process_g_fn is not None and not callable(self.process_g_fn):
            raise InvalidArgumentError(
                f"process_g_fn must be callable, got {type(self.process_g_fn).__name__}."
            )
        for name in ("process_df_fn_kwargs", "plot_kwargs"):
            if getattr(self, name) is None:
                setattr(self, name, {})
            if not isinstance(getattr(self, name), dict):
                raise InvalidArgumentError(
                    f"{name} must be a dict, got {type(getattr(self, name)).__name__}: for "
                    "example plot_kwargs=dict(x='config/lr', y='loss')."
                )
        for name in ("rename_mapping", "matplotlib_rcParams_update"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise InvalidArgumentError(f"{name} must be a dict, got {type(value).__name__}.")
        if self.matplotlib_rcParams_update:
            _check_rc_params(self.matplotlib_rcParams_update)
        if self.plot_format is not None and self.plot_format not in PLOT_FORMATS:
            raise InvalidArgumentError(
                f"plot_format={self.plot_format!r} is not valid: use one of "
                f"{', '.join(map(repr, PLOT_FORMATS))}, or None to not save the figure."
            )
        if self.plot_path is not None and self.plot_format is None:
            suffix = Path(self.plot_path).suffix.lstrip(".")
            if suffix not in PLOT_FORMATS:
                raise InvalidArgumentError(
                    f"plot_path={str(self.plot_path)!r} needs a .png, .pdf or .svg suffix "
                    "(or give plot_format=)."
                )
            self.plot_format = suffix
        if self.plot_path is not None:
            folder = Path(self.plot_path).expanduser().absolute().parent
            if not folder.is_dir():
                # radas writes only into folders the user made (or its own, under RADAS_HOME)
                raise InvalidArgumentError(
                    f"plot_path={str(self.plot_path)!r}: the folder {folder} does not exist. "
                    f"Create it first (mkdir -p {folder}), or give a path in an existing "
                    "folder. Nothing was run."
                )


def _check_rc_params(update: dict[str, Any]) -> None:
    """Refuse an unknown rcParams key or a value matplotlib cannot use, before anything runs."""
    import difflib

    import matplotlib as mpl

    for key, value in update.items():
        if key not in mpl.rcParams:
            close = difflib.get_close_matches(str(key), list(mpl.rcParams), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidArgumentError(
                f"matplotlib_rcParams_update: {key!r} is not a matplotlib setting{hint}. "
                "matplotlib.rcParams.keys() lists them, e.g. {'font.size': 12}."
            )
        try:
            mpl.RcParams({key: value})
        except (ValueError, TypeError) as err:
            raise InvalidArgumentError(
                f"matplotlib_rcParams_update[{key!r}] = {value!r} is not valid: {err}. "
                f"The current value shows the kind expected: {mpl.rcParams[key]!r}."  # type: ignore[index]
            ) from err


@dataclass
class Figure:
    """A drawn plot: the matplotlib Figure, what ``plot_fn`` returned, and the saved file."""

    figure: Any
    plot: Any
    path: str | None = None


def make_dataframe(tuner: Tuner, options: AnalysisOptions) -> pd.DataFrame:
    """tuner_to_df_fn (default: brief dataframe) -> process_df_fn -> rename_mapping."""
    to_df = options.tuner_to_df_fn or Tuner.get_brief_dataframe
    df = _call("tuner_to_df_fn", to_df, tuner)
    if not isinstance(df, pd.DataFrame):
        raise InvalidArgumentError(
            f"tuner_to_df_fn must return a pandas DataFrame, it returned {type(df).__name__}."
        )
    if options.process_df_fn is not None:
        df = _call("process_df_fn", options.process_df_fn, df, **options.process_df_fn_kwargs)
        if not isinstance(df, pd.DataFrame):
            raise InvalidArgumentError(
                f"process_df_fn must return a pandas DataFrame, it returned {type(df).__name__}."
            )
    if options.rename_mapping:
        df = df.rename(columns=options.rename_mapping)
    return df


def plot(df: pd.DataFrame, options: AnalysisOptions, default_path: Path) -> Figure | None:
    """Draw ``df`` with ``plot_fn``; save it when ``plot_format`` is set. None without plot_fn."""
    if options.plot_fn is None:
        return None
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    with mpl.rc_context(dict(options.matplotlib_rcParams_update or {})):  # type: ignore[arg-type]
        if options.process_sns_fn is not None:
            _call("process_sns_fn", options.process_sns_fn)
        kwargs = resolve_plot_kwargs(df, options.plot_kwargs)
        if _is_axes_level(options.plot_fn) and "ax" not in kwargs:
            _, kwargs["ax"] = plt.subplots()
        plotted = _call("plot_fn", options.plot_fn, data=kwargs.pop("data", df), **kwargs)
        if options.process_g_fn is not None:
            _call("process_g_fn", options.process_g_fn, plotted)
        figure = figure_of(plotted)
        path = None
        if options.plot_format is not None:
            if options.plot_path is not None:
                target = Path(options.plot_path).expanduser()
                if target.exists():  # the user's own file name: kept, and said
                    warn(
                        f"plot_path {target} existed: the earlier figure there is replaced by "
                        "this one. Give another plot_path to keep both."
                    )
            else:  # radas's own folder for the experiment: made when missing
                target = default_path.with_suffix(f".{options.plot_format}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target = unused_figure_path(target)
            figure.savefig(target, format=options.plot_format, bbox_inches="tight")
            path = str(target)
    if not _in_interactive_ipython():
        plt.close(figure)  # scripts: keep pyplot from accumulating figures; fig stays usable
    return Figure(figure=figure, plot=plotted, path=path)


def unused_figure_path(target: Path) -> Path:
    """``target``, or when a figure is there already (an earlier analysis) the first free
    numbered name beside it (``lr.png``, ``lr-2.png``, ``lr-3.png``...): an earlier figure
    is never replaced.

    >>> unused_figure_path(Path("/nonexistent/lr.png"))
    PosixPath('/nonexistent/lr.png')
    """
    number = 1
    candidate = target
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
    return candidate


def resolve_plot_kwargs(df: pd.DataFrame, plot_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call function values with ``df`` (``data=lambda df: df.pivot(...)``).

    Colormaps and other callable objects, and function-valued seaborn parameters such as
    ``estimator=np.median``, are passed through unchanged.
    """
    resolved = {}
    for key, value in plot_kwargs.items():
        is_function = isinstance(value, (types.FunctionType, functools.partial))
        if is_function and key not in FUNCTION_VALUED_KWARGS:
            value = _call(f"plot_kwargs[{key!r}]", value, df)
        resolved[key] = value
    return resolved


def figure_of(plotted: Any) -> Any:
    """The matplotlib Figure behind an Axes, a seaborn Grid, an array of Axes or None."""
    import matplotlib.pyplot as plt
    import numpy as np

    if isinstance(plotted, np.ndarray) and plotted.size:
        plotted = plotted.flat[0]
    for attribute in ("figure", "fig"):
        figure = getattr(plotted, attribute, None)
        if figure is not None and hasattr(figure, "savefig"):
            return figure
    if hasattr(plotted, "savefig"):
        return plotted
    return plt.gcf()


def _is_axes_level(plot_fn: Callable[..., Any]) -> bool:
    try:
        return "ax" in inspect.signature(plot_fn).parameters
    except (TypeError, ValueError):
        return False


def _in_interactive_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


class UserFunctionError(Exception):
    """A user-supplied analysis function raised; ``name`` says which."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(f"{name} raised {type(error).__name__}: {error}")
        self.name = name


def _call(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RadasError:
        raise  # radas's own (a damaged experiment folder): not the user's function's fault
    except Exception as err:
        raise UserFunctionError(name, err) from err
