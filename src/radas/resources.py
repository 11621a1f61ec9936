"""What each trial asks Ray for (``cpu_per_trial``), and why a failed trial failed.

A trial can fail for three kinds of reasons, and radas treats them differently:

- ``"lost"``: the node or worker process under it went away (a node died, the actor became
  unavailable). Nothing is wrong with the trial: radas runs it again as it was.
- ``"error"``: the trainable raised. Running it again would fail again: it stays an error.
"""

from __future__ import annotations

from typing import Literal

from radas.errors import InvalidArgumentError

FailureKind = Literal["lost", "error"]


def validate_cpu_per_trial(cpu_per_trial: object) -> float:
    if (
        isinstance(cpu_per_trial, bool)
        or not isinstance(cpu_per_trial, (int, float))
        or not cpu_per_trial > 0
    ):
        raise InvalidArgumentError(
            f"cpu_per_trial={cpu_per_trial!r} is not valid: give a positive number of CPUs per "
            "trial, for example cpu_per_trial=1 (fractions such as 0.5 are allowed)."
        )
    return cpu_per_trial


def trial_resources(cpu_per_trial: float) -> dict[str, float]:
    """The resource request of one trial.

    >>> trial_resources(2)
    {'cpu': 2}
    """
    return {"cpu": cpu_per_trial}


def classify_failure(error: BaseException | None, text: str = "") -> FailureKind:
    """Why a trial failed, from the exception Ray stored (or the traceback text)."""
    from ray import exceptions

    lost_types = (
        exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError
        exceptions.NodeDiedError,
        exceptions.WorkerCrashedError,
        exceptions.LocalRayletDiedError,
    )
    if error is not None:
        if isinstance(error, exceptions.RayTaskError):
            return "error"  # the trainable's own exception, wrapped by Ray
        return "lost" if isinstance(error, lost_types) else "error"
    lost_markers = (
        "ActorDiedError",
        "ActorUnavailableError",
        "NodeDiedError",
        "WorkerCrashedError",
        "The actor died unexpectedly",
        "is unavailable:",
    )
    return "lost" if any(marker in text for marker in lost_markers) else "error"
