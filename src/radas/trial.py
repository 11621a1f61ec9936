"""What a trainable calls while it runs as a trial: ``report`` (metrics, and a state to continue
from), ``load_state`` and ``current_experiment``. Implemented in ``radas.tune.trial``."""

from radas.tune.trial import current_experiment, load_state, report

__all__ = ["current_experiment", "load_state", "report"]
