"""An experiment's status in words, from its trial counts and the state of the run.

One function, ``experiment_status``, makes every status radas shows: the returned
``outcome.status``, the closing console line, the notification mail, ``get_client(...)``'s
listing and ``radas ls``. A Ray job that SUCCEEDED while every trial errored is shown as
``FINISHED, 3 of 3 trials errored``, never as a bare ``SUCCEEDED``; when the trials cannot be
read, the status says so instead of guessing.

>>> experiment_status("ENDED", TrialCounts(total=3, finished=0, errored=3))
'FINISHED, 3 of 3 trials errored'
>>> experiment_status("ENDED", TrialCounts(total=10, finished=4, errored=0))
'STOPPED, 4 of 10 trials finished'
>>> experiment_status("SUCCEEDED", None, unknown="results root not readable here")
'SUCCEEDED (trials unknown: results root not readable here)'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The state of the run (a Ray job's status, or what radas knows of a local run) -> what it
# means for the experiment. ENDED: the run is over (a local run that returned; radas's own
# word); the trial counts then say whether it finished or stopped early.
_ENDED = ("ENDED", "SUCCEEDED", "STOPPED")
_ACTIVE = ("PENDING", "RUNNING")


@dataclass(frozen=True)
class TrialCounts:
    """How many trials an experiment has, and how many of them finished or errored."""

    total: int
    finished: int
    errored: int

    @property
    def unfinished(self) -> int:
        return self.total - self.finished - self.errored

    @classmethod
    def of(cls, statuses: Iterable[str]) -> TrialCounts:
        """Counts of Tune trial statuses (``TERMINATED`` finished, ``ERROR`` errored).

        >>> TrialCounts.of(["TERMINATED", "ERROR", "PENDING"])
        TrialCounts(total=3, finished=1, errored=1)
        """
        statuses = list(statuses)
        return cls(
            total=len(statuses),
            finished=statuses.count("TERMINATED"),
            errored=statuses.count("ERROR"),
        )

    @classmethod
    def of_trials(cls, trials: Iterable[Any]) -> TrialCounts:
        """Counts of trials that have a ``status`` (``_ray_state.TrialState``)."""
        return cls.of(trial.status for trial in trials)


def experiment_status(
    run: str, counts: TrialCounts | None, *, unknown: str = "", failure: str = "driver error"
) -> str:
    """The experiment's status in words.

    ``run`` is the state of the run: a Ray job status (``PENDING``, ``RUNNING``,
    ``SUCCEEDED``, ``STOPPED``, ``FAILED``) or ``ENDED`` for a run that is over. ``counts``
    are its trials, or None when they cannot be read (``unknown`` says why). ``failure``
    names what failed a ``FAILED`` run.

    >>> experiment_status("ENDED", TrialCounts(total=6, finished=6, errored=0))
    'FINISHED'
    >>> experiment_status("RUNNING", TrialCounts(total=10, finished=2, errored=1))
    'RUNNING, 2 of 10 trials finished, 1 errored'
    >>> experiment_status("FAILED", TrialCounts(total=4, finished=2, errored=0))
    'FAILED (driver error), 2 of 4 trials finished'
    """
    if run == "FAILED":
        known = f", {_progress(counts)}" if counts is not None and counts.total else ""
        return f"FAILED ({failure}){known}"
    if run in _ACTIVE:
        if run == "RUNNING" and counts is not None and counts.total:
            return f"RUNNING, {_progress(counts)}"
        return run
    if run not in _ENDED:
        return run  # a state radas does not know: shown as it is rather than guessed at
    if counts is None:
        return f"{run} (trials unknown: {unknown or 'not readable'})"
    if counts.total == 0:
        return "EMPTY (no trials stored)"
    if counts.unfinished:
        return f"STOPPED, {_progress(counts)}"
    if counts.errored:
        return f"FINISHED, {counts.errored} of {counts.total} trials errored"
    return "FINISHED"


def _progress(counts: TrialCounts | None) -> str:
    assert counts is not None
    text = f"{counts.finished} of {counts.total} trials finished"
    return text + (f", {counts.errored} errored" if counts.errored else "")
