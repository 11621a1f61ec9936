"""What runs where Ray Tune runs: the sweep (``sweep``), retries, the progress line, the
trainable's helpers (``trial``) and the worker hook."""
