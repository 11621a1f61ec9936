"""Mail from a script or a trainable: ``send_email`` and ``check_notification`` (what
``run_experiment(email=...)`` uses). Implemented in ``radas.notify``."""

from radas.notify.email import check_notification, send_email

__all__ = ["check_notification", "send_email"]
