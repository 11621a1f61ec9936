"""What looks like a secret, and how secrets reach a trial without being stored or logged.

Secrets come from ``param_space``: the ``api_key`` of a tracker block (``config["wandb"]``,
``config["swanlab"]``) and the ``param_space["secrets"]`` block (environment variable name
-> value). ``radas.trackers.secrets.prepare_secrets`` takes them out of the config before
anything is stored and warns about other secret-looking config values. From there they
travel only in memory:

- ``SweepSpec.secrets`` holds them; a pickled SweepSpec never does (``SweepSpec.__getstate__``).
- ``with_secrets`` wraps the trainable so each trial finds them in ``os.environ`` while it
  runs. Tune never stores a trainable (``tuner.pkl`` drops it); it keeps it in Ray's memory
  (the GCS key-value store), which a job's driver clears when the sweep ends
  (``forget_trainables``).
- For a cluster job, ``hand_over`` puts them in the cluster's memory under a random key
  (through the job server's package upload, the way the job's code travels) and names only
  the key in the job's environment; the job's driver reads and deletes them (``take_over``).

So they are in no job metadata, no ``runtime_env``, no log and no file radas or Ray write.
Whoever holds the cluster's token can still read the cluster's memory and run code next to
the trials: see "Trust model" in the README.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from secrets import token_hex
from typing import Any

from radas.errors import ClusterError

SECRETS_BLOCK = "secrets"  # param_space["secrets"] = {"ENV_NAME": "value"}
HAND_OVER_ENV = "RADAS_SECRETS_KEY"  # names (only) the cluster-memory key of a job's secrets
_HAND_OVER_HEADER = b"radas-secrets-v1\n"  # Ray echoes a failed upload's first 15 bytes
# Config keys whose values are secrets (matched on the lower-cased key, nested keys too).
SECRET_KEY_PATTERN = re.compile(
    r"(^|[_\-.])(api_?key|apikey|password|passwd|secret|token|auth_token|access_key|"
    r"secret_key|private_key|credentials?)$"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Files that usually hold secrets, by name; and the look-alikes that usually do not.
SECRET_FILE_PATTERNS = (
    "*.token",
    ".env",
    ".env.*",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "credentials",
    "credentials.json",
    ".netrc",
    ".pypirc",
    ".git-credentials",
)
NOT_SECRET_FILE_PATTERNS = ("*.pub", ".env.example", ".env.sample", ".env.template")


def is_secret_key(key: object) -> bool:
    """Whether a config key names a secret (``api_key``, ``password``, ``*_token``, ...).

    >>> is_secret_key("api_key"), is_secret_key("HF_TOKEN"), is_secret_key("max_tokens")
    (True, True, False)
    """
    return isinstance(key, str) and bool(SECRET_KEY_PATTERN.search(key.lower()))


def is_secret_file(name: str) -> bool:
    """Whether a file name looks like one that holds a secret (``.env``, ``id_rsa``, ...).

    >>> is_secret_file(".env"), is_secret_file("hf.token"), is_secret_file("id_rsa.pub")
    (True, True, False)
    """

    def matches(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    return matches(SECRET_FILE_PATTERNS) and not matches(NOT_SECRET_FILE_PATTERNS)


def secret_key_paths(space: Any, prefix: str = "") -> list[str]:
    """Where ``space`` holds a value under a secret-looking key (``db.password``), nested
    dicts, lists and search spaces included; None, booleans and numbers are no secrets.

    >>> secret_key_paths({"lr": 1, "db": {"password": "x", "use_token": True}})
    ['db.password']
    """
    found: list[str] = []
    if isinstance(space, Mapping):
        for key, value in space.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if is_secret_key(key) and not isinstance(value, (bool, int, float, type(None))):
                found.append(path)
            else:
                found.extend(secret_key_paths(value, path))
    elif isinstance(space, (list, tuple)):
        for index, value in enumerate(space):
            found.extend(secret_key_paths(value, f"{prefix}[{index}]"))
    elif isinstance(getattr(space, "categories", None), (list, tuple)):  # tune.choice
        found.extend(secret_key_paths(list(space.categories), prefix))
    return found


def secret_looking_files(paths: Iterable[Path], directory: Path) -> list[str]:
    """The paths (relative to ``directory``) whose file name looks like a secret's."""
    return sorted(str(path.relative_to(directory)) for path in paths if is_secret_file(path.name))


# --- in the trial --------------------------------------------------------------------------


def with_secrets(trainable: Any, secrets: Mapping[str, str]) -> Any:
    """``trainable`` running with ``secrets`` in ``os.environ`` (then restored); the same
    trainable when there are none. Keeps the name, signature and kind (function or class)."""
    if not secrets:
        return trainable
    env = dict(secrets)
    if isinstance(trainable, type):  # a tune.Trainable subclass

        class WithSecrets(trainable):
            def setup(self, *args: Any, **kwargs: Any) -> Any:
                self._radas_environment = _set_environment(env)
                return super().setup(*args, **kwargs)

            def cleanup(self) -> Any:
                try:
                    return super().cleanup()
                finally:
                    _restore_environment(getattr(self, "_radas_environment", {}))

        WithSecrets.__name__ = trainable.__name__
        WithSecrets.__qualname__ = trainable.__qualname__
        return WithSecrets

    @functools.wraps(trainable)
    def run_with_secrets(*args: Any, **kwargs: Any) -> Any:
        with _environment(env):
            return trainable(*args, **kwargs)

    return run_with_secrets


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    previous = _set_environment(env)
    try:
        yield
    finally:
        _restore_environment(previous)


def _set_environment(env: Mapping[str, str]) -> dict[str, str | None]:
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    return previous


def _restore_environment(previous: Mapping[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# --- client -> cluster job ---------------------------------------------------------------


def hand_over(job_server: Any, secrets: Mapping[str, str]) -> str:
    """Put ``secrets`` into the cluster's memory for one job; returns the key to name in the
    job's environment (``HAND_OVER_ENV``). Goes through the job server's package upload
    (``JobServer.put_package``), which keeps the bytes in the cluster's memory (GCS) under
    that key; nothing is written to disk or logged."""
    key = f"gcs://radas_secrets_{token_hex(16)}.zip"
    job_server.put_package(key, _HAND_OVER_HEADER + json.dumps(dict(secrets)).encode())
    return key


def take_over(key: str | None) -> dict[str, str]:
    """In the job's driver (Ray connected): the secrets ``hand_over`` stored under ``key``,
    deleted from the cluster's memory; {} without a key."""
    if not key:
        return {}
    from radas.ray_compat.private import pop_from_cluster_memory

    payload = pop_from_cluster_memory(key)
    if payload is None or not payload.startswith(_HAND_OVER_HEADER):
        raise ClusterError(
            "The experiment's secrets (tracker API keys, param_space['secrets']) are gone "
            "from the cluster's memory (it restarted after the job was submitted, or the job "
            "was started twice). Submit the experiment again (run_choice='restore' continues "
            "it)."
        )
    return dict(json.loads(payload[len(_HAND_OVER_HEADER) :]))


def forget_trainables() -> None:
    """In the job's driver, when the sweep ends: drop the trainables Tune registered in the
    cluster's memory (with the secrets ``with_secrets`` gave them). Tune does this at exit,
    but a job driver ends with ``os._exit``, which skips it."""
    from radas.ray_compat.private import forget_registered_trainables

    forget_registered_trainables()
