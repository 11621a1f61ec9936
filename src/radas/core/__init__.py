"""The bottom layer: console output and warnings, argument checks, waiting, the sweep's
spec, statuses, names, the user's radas config and secrets. Imports no other radas layer."""

VERSION = "0.1.0"  # radas.__version__
