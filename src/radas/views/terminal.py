"""``radas watch NAME``: a running experiment followed in a terminal until it ends.

On a terminal a table of its trials (status, the config values that vary, the last value of
each reported metric, the best trial by the experiment's metric and mode) is redrawn in place
under its progress line (rich's ``Live``); an errored trial's error is printed above it once.
In a pipe or a file it prints lines instead, one per change, flushed, no escape codes, so
``radas watch NAME | tail`` or a program reading the pipe sees it progress::

    lr-sweep: 0 of 3 trials finished, 2 running, 1 pending, 0 errored; 0:00:04 elapsed
    trial 3f2a1_00000 (lr=0.1): RUNNING
    trial 3f2a1_00001 (lr=0.01): RUNNING -> ERROR
    trial 3f2a1_00001 (lr=0.01) errored: ValueError: loss is nan (traceback in ...)

When it ends, the final table and one status line; the exit status is that of
``radas logs --follow``: 0 finished or stopped normally, 1 failed or every trial errored.
Ctrl-C ends the watching (exit status 130); the experiment keeps running.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any

from radas.errors import InvalidArgumentError, RadasError
from radas.views.experiment_args import add_experiment_arguments, user_of

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from radas.views.watched import Snapshot, TrialRow, Watched

EVERY_S = 2.0
HEARTBEAT_S = 30.0  # in a pipe, the progress line at least this often while nothing changes
BEST = "*"
TABLE_LINES = 8  # what the live view shows besides the rows: progress, header, borders, caption
EXAMPLES = (
    ("radas watch lr-sweep", "its table, redrawn every 2 s, until it ends"),
    ("radas watch lr-sweep --run-with cluster:dev", ""),
    ("radas watch lr-sweep | tail -n 20", "lines, not a table: the last ones"),
    ("radas watch s3://lab/results/alice/_home_alice_proj_lr_sweep", ""),
)


def add_command(commands: Any) -> None:
    """``radas watch`` in ``commands`` (the ``radas`` parser's sub-commands)."""
    summary = "follow a running experiment: its progress and trials, until it ends"
    lines = ["examples:"] + [
        f"  {example:<42} {what}".rstrip() if what else f"  {example}" for example, what in EXAMPLES
    ]
    watch = commands.add_parser(
        "watch",
        help=summary,
        description=summary[0].upper() + summary[1:] + ".\n" + _exit_statuses(),
        epilog="\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_arguments(watch)
    watch.add_argument(
        "--every",
        type=float,
        default=EVERY_S,
        metavar="SECONDS",
        help=f"how often it is read again (default: {EVERY_S:g})",
    )
    watch.set_defaults(handler=watch_command)


def _exit_statuses() -> str:
    return (
        "In a pipe it prints a line per change instead of a table. Exit status 0 when it\n"
        "finished or stopped normally, 1 when it failed or every trial errored, 130 on Ctrl-C\n"
        "(the experiment keeps running)."
    )


def watch_command(args: argparse.Namespace) -> int:
    from radas.views.watched import find_experiment

    if not args.every > 0:
        raise InvalidArgumentError(
            f"--every {args.every:g}: give how often to read the experiment in seconds, more "
            "than 0 (e.g. --every 5)."
        )
    user, _ = user_of(args)
    watched = find_experiment(
        args.experiment, run_with=args.run_with, directory=args.dir, user=user
    )
    return watch(watched, every_s=args.every)


def watch(
    watched: Watched,
    *,
    every_s: float = EVERY_S,
    console: Console | None = None,
    out: IO[str] | None = None,
) -> int:
    """Show ``watched`` until it ends; returns the exit status. With ``console`` (or when
    ``out``, default stdout, is a terminal) the live table, else lines to ``out``."""
    from radas.views.watched import read_snapshot

    out = out if out is not None else sys.stdout
    if console is None and out.isatty():
        from rich.console import Console

        console = Console(file=out)
    view: _View = _LiveView(console) if console is not None else _LineView(out)
    snapshot = read_snapshot(watched)
    try:
        view.show(snapshot, watched)
        while snapshot.running:
            time.sleep(every_s)
            try:
                snapshot = read_snapshot(watched)
            except RadasError as err:  # an object store that did not answer: read again
                view.say_once(f"problem: {err} (radas reads it again)")
                continue
            view.show(snapshot, watched)
        view.close()
        view.end(snapshot)
    except KeyboardInterrupt:
        view.close()
        view.say(f"stopped watching: {watched.label} keeps running (radas watch to see it again)")
        return 130
    except BrokenPipeError:  # radas watch NAME | head: the reader has what it wanted
        _discard_output(out)
        return 141  # as a process ended by SIGPIPE
    return snapshot.exit_status()


def _discard_output(out: IO[str]) -> None:
    """What is left in ``out``'s buffer goes nowhere (Python would report the broken pipe
    again when it flushes at exit)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


# --- what both views say --------------------------------------------------------------------


def progress_line(snapshot: Snapshot) -> str:
    """The counts as radas's progress line has them: ``lr-sweep: 1 of 3 trials finished, 2
    running, 0 pending, 0 errored; best loss=0.25; 0:00:12 elapsed``."""
    counts = snapshot.progress
    text = (
        f"{snapshot.label}: {counts.finished} of {counts.total} trials finished, "
        f"{counts.running} running, {counts.pending} pending, {counts.errored} errored"
    )
    if counts.other:
        text += f", {counts.other} stopped"
    best = _best_row(snapshot)
    if best is not None and snapshot.metric is not None:
        text += f"; best {snapshot.metric}={_value(best.metrics[snapshot.metric])}"
    if not snapshot.trials:
        text += "; no trials reported yet" if not snapshot.problems else "; no trials readable"
    if snapshot.elapsed_s is not None:
        text += f"; {timedelta(seconds=round(snapshot.elapsed_s))} elapsed"
    return text


def error_line(row: TrialRow, watched: Watched) -> str:
    """An errored trial in one line: its error and where its whole traceback is."""
    hint = f"; {watched.logs_hint} --trial {row.trial_id}" if watched.logs_hint else ""
    where = f" (traceback in {row.traceback_path}{hint})" if row.traceback_path else ""
    return f"trial {row.trial_id}{_config(row)} errored: {row.error}{where}"


def status_line(snapshot: Snapshot) -> str:
    return f"{snapshot.label}: {snapshot.status} (stored at {snapshot.path})"


def _config(row: TrialRow) -> str:
    text = ", ".join(f"{key}={_value(value)}" for key, value in row.config.items())
    return f" ({text[:197] + '...' if len(text) > 200 else text})" if text else ""


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _best_row(snapshot: Snapshot) -> TrialRow | None:
    rows = [row for row in snapshot.trials if row.trial_id == snapshot.best_trial]
    return rows[0] if rows else None


# --- the two views --------------------------------------------------------------------------


class _View:
    """What changed since the last snapshot, said once: errors and problems."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def news(self, snapshot: Snapshot, watched: Watched) -> list[str]:
        lines = [
            f"problem: {problem}" for problem in snapshot.problems if problem not in self._said
        ]
        self._said.update(snapshot.problems)
        for row in snapshot.trials:
            if row.error is not None and f"error {row.trial_id}" not in self._said:
                self._said.add(f"error {row.trial_id}")
                lines.append(error_line(row, watched))
        return lines

    def say_once(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            self.say(line)

    def show(self, snapshot: Snapshot, watched: Watched) -> None:
        raise NotImplementedError

    def say(self, line: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop redrawing (the last drawing stays)."""

    def end(self, snapshot: Snapshot) -> None:
        raise NotImplementedError


class _LineView(_View):
    """Lines for a pipe: the progress line when the counts change (and every HEARTBEAT_S),
    a line per trial whose status changed, each error once; the final table at the end."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__()
        self._out = out
        self._statuses: dict[str, str] = {}
        self._counts: object = None
        self._said_at = 0.0

    def say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def show(self, snapshot: Snapshot, watched: Watched) -> None:
        counts = (snapshot.progress, snapshot.best_trial, bool(snapshot.trials))
        now = time.monotonic()
        if counts != self._counts or now - self._said_at >= HEARTBEAT_S:
            self._counts, self._said_at = counts, now
            self.say(progress_line(snapshot))
        for row in snapshot.trials:
            before = self._statuses.get(row.trial_id)
            if before != row.status:
                change = row.status if before is None else f"{before} -> {row.status}"
                self.say(f"trial {row.trial_id}{_config(row)}: {change}")
                self._statuses[row.trial_id] = row.status
        for line in self.news(snapshot, watched):
            self.say(line)

    def end(self, snapshot: Snapshot) -> None:
        self.say(plain_table(snapshot))
        self.say(status_line(snapshot))


class _LiveView(_View):
    """The table redrawn in place under the progress line; errors printed above it."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        super().__init__()
        self._console = console
        self._live = Live(
            console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
        )
        self._live.start()

    def say(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False)

    def show(self, snapshot: Snapshot, watched: Watched) -> None:
        for line in self.news(snapshot, watched):
            self._console.print(line, style="red", markup=False, highlight=False)
        rows = max(self._console.size.height - TABLE_LINES, 3)
        self._live.update(view(snapshot, rows), refresh=True)

    def close(self) -> None:
        self._live.stop()

    def end(self, snapshot: Snapshot) -> None:
        style = "bold red" if snapshot.exit_status() else "bold green"
        self._console.print(status_line(snapshot), style=style, markup=False, highlight=False)


def view(snapshot: Snapshot, max_rows: int | None = None) -> RenderableType:
    """The progress line over the table of trials, for rich (at most ``max_rows`` trials)."""
    from rich.console import Group
    from rich.text import Text

    return Group(Text(progress_line(snapshot), style="bold"), trial_table(snapshot, max_rows))


STATUS_STYLES = {"TERMINATED": "green", "RUNNING": "cyan", "ERROR": "red", "STOPPED": "yellow"}


def trial_table(snapshot: Snapshot, max_rows: int | None = None) -> Table:
    """The trials as a rich table; the best one marked (``*``, bold) with a caption saying by
    which metric. Beyond ``max_rows`` trials, those to see first (``shown_first``)."""
    from rich.table import Table
    from rich.text import Text

    columns, headers = _columns(snapshot)
    rows = shown_first(snapshot, max_rows)
    notes = []
    if snapshot.best_trial is not None:
        notes.append(f"{BEST} best by {snapshot.metric} ({snapshot.mode})")
    if len(rows) < len(snapshot.trials):
        notes.append(f"{len(snapshot.trials) - len(rows)} more trials: all in radas watch | cat")
    caption = "\n".join(notes) or None
    table = Table(caption=caption, caption_justify="left", header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        best = row.trial_id == snapshot.best_trial
        cells = [Text(cell) for cell in _cells(row, columns, best)]  # never read as markup
        cells[1].stylize(STATUS_STYLES.get(row.status, ""))
        table.add_row(*cells, style="bold" if best else None)
    if not snapshot.trials:
        table.add_row(*(["(no reports yet)"] + [""] * (len(headers) - 1)))
    return table


PRIORITY = {"RUNNING": 0, "ERROR": 1, "TERMINATED": 3}  # then the rest: pending, stopped


def shown_first(snapshot: Snapshot, max_rows: int | None) -> list[TrialRow]:
    """At most ``max_rows`` trials, in trial order: the best, then running, errored,
    finished (the last in trial order first) and the rest."""
    if max_rows is None or len(snapshot.trials) <= max_rows:
        return snapshot.trials
    order = {row.trial_id: index for index, row in enumerate(snapshot.trials)}
    ranked = sorted(
        snapshot.trials,
        key=lambda row: (
            row.trial_id != snapshot.best_trial,
            PRIORITY.get(row.status, 4),
            -order[row.trial_id],
        ),
    )
    kept = {row.trial_id for row in ranked[: max(max_rows, 1)]}
    return [row for row in snapshot.trials if row.trial_id in kept]


def plain_table(snapshot: Snapshot) -> str:
    """The trials as aligned text columns (a pipe's final table)."""
    columns, headers = _columns(snapshot)
    rows = [headers] + [
        _cells(row, columns, row.trial_id == snapshot.best_trial) for row in snapshot.trials
    ]
    if not snapshot.trials:
        rows.append(["(no reports yet)"] + [""] * (len(headers) - 1))
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)) for row in rows]
    if snapshot.best_trial is not None:
        lines.append(f"{BEST} best by {snapshot.metric} ({snapshot.mode})")
    return "\n".join(line.rstrip() for line in lines)


def _columns(snapshot: Snapshot) -> tuple[list[Callable[[TrialRow], Any]], list[str]]:
    """How to read each column of a trial's row, and the headers."""
    from radas.views.watched import ITERATION

    metrics = [name for name in snapshot.metric_columns if name != ITERATION]
    has_iteration = any(ITERATION in row.metrics for row in snapshot.trials)
    readers: list[Callable[[TrialRow], Any]] = [
        lambda row: row.trial_id,
        lambda row: row.status,
    ]
    headers = ["trial", "status"]
    if has_iteration:
        readers.append(lambda row: row.metrics.get(ITERATION))
        headers.append("iter")
    for key in snapshot.config_columns:
        readers.append(_reader("config", key))
        headers.append(key)
    for name in metrics:
        readers.append(_reader("metrics", name))
        headers.append(name)
    return readers, headers


def _reader(part: str, key: str) -> Callable[[TrialRow], Any]:
    """Reads ``row.<part>[key]`` (None where the trial has none)."""
    return lambda row: getattr(row, part).get(key)


def _cells(row: TrialRow, columns: list[Callable[[TrialRow], Any]], best: bool) -> list[str]:
    cells = [_value(read(row)) for read in columns]
    cells[0] = f"{cells[0]} {BEST}" if best else cells[0]
    return cells
