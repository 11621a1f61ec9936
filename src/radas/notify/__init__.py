"""Mail: SMTP settings and sending (``smtp``), the notification of an experiment's end
(``email``). ``radas.email`` is the public face."""
