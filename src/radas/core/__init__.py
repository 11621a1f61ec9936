"""The bottom layer: console output and warnings, argument checks, waiting, the sweep's
spec, statuses, names, the user's radas config and secrets. Imports no other radas layer."""

from importlib import metadata

DISTRIBUTION = "radas-ray"
"""radas's name on the package index (``pip install radas-ray``; the index's ``radas`` is
another project). The import name and the command are ``radas``."""

try:
    VERSION = metadata.version(DISTRIBUTION)  # pyproject.toml's, as installed
except metadata.PackageNotFoundError:  # the source tree on sys.path, never installed
    VERSION = "0+unknown"
"""radas's version (``radas.__version__``): pyproject.toml's ``version``, read from the
installed distribution's metadata; ``0+unknown`` when radas runs from a source tree that was
never installed (``pip install -e .`` there gives the real one)."""
