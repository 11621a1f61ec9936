"""What each trial asks Ray for, derived from ``cpu_per_trial``."""

from __future__ import annotations

from radas.errors import InvalidArgumentError


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
