"""radas: run Ray Tune sweeps locally or on named Ray clusters; get a DataFrame and a figure.

Start with ``radas.run_experiment`` (async) or ``radas.run_experiment_sync`` (scripts).
"""

from radas.backends.client import get_client, list_experiments
from radas.core import VERSION as _VERSION
from radas.core.console import print_error, print_info, print_warning
from radas.core.moved import install as _install_moved_names
from radas.errors import (
    AnalysisError,
    ArtifactNotFoundError,
    ArtifactPathError,
    ArtifactTypeError,
    ClusterAuthError,
    ClusterConfigError,
    ClusterError,
    ClusterOfflineError,
    EmailConfigError,
    EmailError,
    ExperimentDamagedError,
    ExperimentNotFoundError,
    ExperimentRunningError,
    GPUNotAvailableError,
    InvalidArgumentError,
    InvalidNameError,
    JobFailedError,
    JobNotFoundError,
    NameCollisionError,
    NodeLaunchError,
    NotSupportedError,
    RadasError,
    RadasWarning,
    ResourceRequestError,
    RunChoiceRequiredError,
    StorageError,
    StorageFullError,
    TrackerConfigError,
    TrackerError,
    TrackerNotInstalledError,
    TrialsOutOfMemoryError,
    UnknownArgumentError,
    UnknownClusterError,
    WorkingDirTooLargeError,
)
from radas.experiment import run_experiment, run_experiment_sync
from radas.resources import verify_gpu
from radas.results.experiment_result import ExperimentResult
from radas.results.tuner import Tuner
from radas.storage.dirs import get_cold_data_dir, get_data_dir, get_ray_results_dir
from radas.tune.trial import load_state, report
from radas.utils import (
    config_seed,
    explode,
    explode_dict_of_tensors,
    explode_tensor,
    get_current_user_name,
    reduce_by_config_cols,
    reduce_by_reduced_col,
    set_seed,
)

_install_moved_names()  # experiments stored before the layers name modules the old way

__version__ = _VERSION

__all__ = [
    "AnalysisError",
    "ArtifactNotFoundError",
    "ArtifactPathError",
    "ArtifactTypeError",
    "ClusterAuthError",
    "ClusterConfigError",
    "ClusterError",
    "ClusterOfflineError",
    "EmailConfigError",
    "EmailError",
    "ExperimentDamagedError",
    "ExperimentNotFoundError",
    "ExperimentResult",
    "ExperimentRunningError",
    "GPUNotAvailableError",
    "InvalidArgumentError",
    "InvalidNameError",
    "JobFailedError",
    "JobNotFoundError",
    "NameCollisionError",
    "NodeLaunchError",
    "NotSupportedError",
    "RadasError",
    "RadasWarning",
    "ResourceRequestError",
    "RunChoiceRequiredError",
    "StorageError",
    "StorageFullError",
    "TrackerConfigError",
    "TrackerError",
    "TrackerNotInstalledError",
    "TrialsOutOfMemoryError",
    "Tuner",
    "UnknownArgumentError",
    "UnknownClusterError",
    "WorkingDirTooLargeError",
    "config_seed",
    "explode",
    "explode_dict_of_tensors",
    "explode_tensor",
    "get_client",
    "get_cold_data_dir",
    "get_current_user_name",
    "get_data_dir",
    "get_ray_results_dir",
    "list_experiments",
    "load_state",
    "print_error",
    "print_info",
    "print_warning",
    "reduce_by_config_cols",
    "reduce_by_reduced_col",
    "report",
    "run_experiment",
    "run_experiment_sync",
    "set_seed",
    "verify_gpu",
]
