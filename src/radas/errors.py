"""Errors radas raises. Every message says what went wrong and what to do next.

The tree::

    RadasError
    ├── InvalidArgumentError (also ValueError)     bad input to a radas call
    │   ├── UnknownArgumentError (also TypeError)  a misspelled keyword
    │   └── InvalidNameError                       user_name / experiment_name
    ├── RunChoiceRequiredError                     run_choice=None without a terminal
    ├── ExperimentNotFoundError                    restore / analyze with nothing stored
    ├── NotSupportedError                          a valid choice this backend cannot do
    └── AnalysisError                              the analysis step failed; results are kept

Warnings radas emits are ``RadasWarning`` (a ``UserWarning``).
"""

from __future__ import annotations

from typing import Any


class RadasError(Exception):
    """Base class of every error radas raises on purpose."""


class InvalidArgumentError(RadasError, ValueError):
    """An argument has a wrong type or value."""


class UnknownArgumentError(InvalidArgumentError, TypeError):
    """A keyword argument that the function does not take (usually a typo)."""


class InvalidNameError(InvalidArgumentError):
    """A user or experiment name that radas cannot use as a directory name."""


class RunChoiceRequiredError(RadasError):
    """``run_choice=None`` and no terminal to ask on."""


class ExperimentNotFoundError(RadasError):
    """Nothing is stored under the experiment's name."""


class NotSupportedError(RadasError):
    """The request is valid in general but not for this backend."""


class AnalysisError(RadasError):
    """Processing or plotting the results failed. The experiment's results are kept.

    ``results`` holds what was computed before the failure (``tuner``, ``df`` when it
    was computed, ``experiment_path``), so nothing has to be re-run.
    """

    def __init__(self, message: str, *, results: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.results = results or {}


class RadasWarning(UserWarning):
    """Something the user should know about that does not stop the call."""
