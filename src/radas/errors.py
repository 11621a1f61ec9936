"""Errors radas raises. Every message says what went wrong and what to do next.

The tree::

    RadasError
    ├── InvalidArgumentError (also ValueError)     bad input to a radas call
    │   ├── UnknownArgumentError (also TypeError)  a misspelled keyword
    │   ├── InvalidNameError                       user_name / experiment_name
    │   ├── ResourceRequestError                   cpu_per_trial bigger than any node
    │   └── NameCollisionError                     another (folder, name) owns that full name
    ├── RunChoiceRequiredError                     run_choice=None without a terminal
    ├── ExperimentNotFoundError                    restore / analyze with nothing stored
    ├── ExperimentRunningError                     run while that experiment runs (anywhere)
    ├── ExperimentDamagedError                     stored files damaged past what can be rebuilt
    ├── NotSupportedError                          a valid choice this backend cannot do
    ├── AnalysisError                              the analysis step failed; results are kept
    ├── TrialsOutOfMemoryError                     out of memory even on the biggest node
    ├── GPUNotAvailableError                       a GPU trainable would run on the CPU
    ├── ClusterError                               anything about a named Ray cluster
    │   ├── UnknownClusterError (also InvalidArgumentError)
    │   ├── ClusterConfigError                     the radas config file is wrong
    │   ├── ClusterOfflineError                    its job server does not answer
    │   ├── ClusterAuthError                       Ray token missing or rejected
    │   ├── WorkingDirTooLargeError                the code to ship is too big
    │   ├── JobNotFoundError                       no such job (for this user)
    │   ├── NodeLaunchError                        the autoscaler cannot launch a node
    │   └── JobFailedError                         the job's driver failed; results kept
    ├── StorageError                               data dirs, cloud artifacts, result files
    │   ├── StorageFullError (also OSError)        no space left where results are written
    │   ├── ArtifactNotFoundError (also FileNotFoundError)  nothing stored at that path
    │   ├── ArtifactPathError (also InvalidArgumentError)   a path outside the user's root
    │   └── ArtifactTypeError (also TypeError)     the object does not fit the extension
    ├── TrackerError                               wandb / swanlab from trainables
    │   ├── TrackerConfigError (also InvalidArgumentError)  a bad config["wandb"] block
    │   └── TrackerNotInstalledError (also ImportError)     enabled but not installed
    └── EmailError                                 a notification mail was not sent
        └── EmailConfigError                       the [smtp] settings are wrong

Warnings radas emits are ``RadasWarning`` (a ``UserWarning``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RadasError(Exception):
    """Base class of every error radas raises on purpose."""


class InvalidArgumentError(RadasError, ValueError):
    """An argument has a wrong type or value."""


class UnknownArgumentError(InvalidArgumentError, TypeError):
    """A keyword argument that the function does not take (usually a typo)."""


class InvalidNameError(InvalidArgumentError):
    """A user or experiment name that radas cannot use as a directory name."""


class NameCollisionError(InvalidNameError):
    """A different (working directory, experiment_name) pair maps onto the full name of an
    experiment stored already. The message names the stored experiment."""


class RunChoiceRequiredError(RadasError):
    """``run_choice=None`` and no terminal to ask on."""


class ExperimentNotFoundError(RadasError):
    """Nothing is stored under the experiment's name."""


class ExperimentRunningError(RadasError):
    """The experiment is running already (in another process, on another machine, or as a
    job on the cluster): ``run`` / ``restore`` would mix two runs in one folder."""


class ExperimentDamagedError(RadasError):
    """Stored files of an experiment are damaged (truncated, emptied, deleted) and what they
    held cannot be rebuilt from the other files. The message names the file and what is lost."""


class NotSupportedError(RadasError):
    """The request is valid in general but not for this backend."""


class AnalysisError(RadasError):
    """Processing or plotting the results failed. The experiment's results are kept.

    ``results`` holds what was computed before the failure (the ``ExperimentResult``:
    ``tuner``, ``df`` when it was computed, ``experiment_path``), so nothing has to be re-run.
    """

    def __init__(self, message: str, *, results: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.results = results or {}


class RadasWarning(UserWarning):
    """Something the user should know about that does not stop the call."""


class ClusterError(RadasError):
    """Something about a named Ray cluster or a job on it."""


class UnknownClusterError(ClusterError, InvalidArgumentError):
    """``run_with="cluster:<name>"`` names no configured cluster."""


class ClusterConfigError(ClusterError):
    """The radas config file (TOML) cannot be used as it is."""


class ClusterOfflineError(ClusterError):
    """The cluster's Ray job server did not answer."""


class ClusterAuthError(ClusterError):
    """The Ray auth token is missing or the cluster rejected it."""


class WorkingDirTooLargeError(ClusterError):
    """The working directory to ship with the job is larger than the limit."""


class JobNotFoundError(ClusterError):
    """No job with that id or name exists for this user."""


class JobFailedError(ClusterError):
    """The experiment's job failed. Results stored before the failure are kept."""

    def __init__(self, message: str, *, job_id: str, logs_tail: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id
        self.logs_tail = logs_tail


class StorageError(RadasError):
    """A data dir or the cloud artifact store cannot be used as configured (not initialised,
    not mounted, unreachable, or an optional package such as s3fs is missing)."""


class StorageFullError(StorageError, OSError):
    """No space left (or quota exceeded) where radas writes. The message names the path and
    how much space was needed; what was stored before stays consistent."""


class ArtifactNotFoundError(StorageError, FileNotFoundError):
    """Nothing is stored at that artifact path. The message names the location looked at."""


class ArtifactPathError(StorageError, InvalidArgumentError):
    """An artifact path that would leave the user's own root (``..``, absolute paths, URLs,
    another user's folder, symlinks pointing out). Nothing was read or written."""


class ArtifactTypeError(StorageError, TypeError):
    """The object cannot be saved with that extension (e.g. a dict as ``.npy``)."""


class TrackerError(RadasError):
    """Something about the wandb / swanlab helpers (``radas.rwandb``, ``radas.rswanlab``)."""


class TrackerConfigError(TrackerError, InvalidArgumentError):
    """A ``config["wandb"]`` / ``config["swanlab"]`` block radas cannot use as it is."""


class TrackerNotInstalledError(TrackerError, ImportError):
    """The tracker is enabled in the config but its package is not installed where the
    trial runs. The message names the extra to install (``pip install "radas-ray[wandb]"``)."""


class EmailError(RadasError):
    """A mail could not be sent (SMTP server unreachable, login or recipient refused)."""


class EmailConfigError(EmailError):
    """The SMTP settings (the ``[smtp]`` table of the radas config or ``RADAS_SMTP_*``
    variables) are missing or wrong."""


class ResourceRequestError(InvalidArgumentError):
    """A trial asks for more than the largest node of the cluster has."""


class NodeLaunchError(ClusterError):
    """The cluster's autoscaler kept failing to launch nodes while trials waited for one and
    none ran (a provider error: quota, capacity, a wrong instance type)."""


class TrialsOutOfMemoryError(RadasError):
    """Trials still ran out of memory with the most resources a node can give them.

    The experiment's results (finished trials included) are stored; ``trial_ids`` lists the
    trials that failed and ``cpu_per_trial`` the last value they were given.
    """

    def __init__(self, message: str, *, trial_ids: list[str], cpu_per_trial: float) -> None:
        super().__init__(message)
        self.trial_ids = trial_ids
        self.cpu_per_trial = cpu_per_trial


class GPUNotAvailableError(RadasError):
    """A trainable that must run on a GPU would run on the CPU."""
