"""Where radas keeps things: results roots, data dirs and cloud artifacts.

``dirs``: the per-user results / data / cold data directories and the artifact root, per
``run_with``. ``artifacts``: the artifact stores (local/shared path, or an object store through
fsspec) behind ``radas.cloud_artifact``. ``serializers``: the format for each extension.
"""

from radas.storage.artifacts import (
    ArtifactStore,
    FsspecArtifactStore,
    LocalArtifactStore,
    open_store,
)
from radas.storage.dirs import (
    StorageRoots,
    get_cold_data_dir,
    get_data_dir,
    get_ray_results_dir,
    radas_home,
    storage_roots,
)

__all__ = [
    "ArtifactStore",
    "FsspecArtifactStore",
    "LocalArtifactStore",
    "StorageRoots",
    "get_cold_data_dir",
    "get_data_dir",
    "get_ray_results_dir",
    "open_store",
    "radas_home",
    "storage_roots",
]
