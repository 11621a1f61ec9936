"""Where radas keeps things: results roots, data dirs and (later) cloud artifacts."""

from radas.storage.dirs import get_ray_results_dir, radas_home

__all__ = ["get_ray_results_dir", "radas_home"]
