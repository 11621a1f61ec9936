"""What looks like a secret, and how secrets reach a trial without being stored or logged.

Secrets come from ``param_space``: the ``api_key`` of a tracker block (``config["wandb"]``,
``config["swanlab"]``) and the ``param_space["secrets"]`` block (environment variable name
-> value). ``prepare_secrets`` takes them out of the config before anything is stored and
warns about other secret-looking config values. From there they travel only in memory:

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

from radas.console import warn
from radas.errors import ClusterError, InvalidArgumentError, TrackerConfigError

SECRETS_BLOCK = "secrets"  # param_space["secrets"] = {"ENV_NAME": "value"}
HAND_OVER_ENV = "RADAS_SECRETS_KEY"  # names (only) the cluster-memory key of a job's secrets
_HAND_OVER_HEADER = b"radas-secrets-v1\n"  # Ray echoes a failed upload's first 15 bytes
# Config keys whose values are secrets (matched on the lower-cased key, nested keys too).
SECRET_KEY_PATTERN = re.compile(
    r"(^|[_\-.])(api_?key|apikey|password|passwd|secret|token|auth_token|access_key|"
    r"secret_key|private_key|credentials?)$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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


# --- before anything is stored -----------------------------------------------------------


def prepare_secrets(
    param_space: dict[str, Any] | None, runtime_env: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Take the secrets out of ``param_space``; returns (the rest, {env name: secret}).

    Tune stores every trial's config (``experiment_state*.json``, radas's history, the
    DataFrame's ``config/*`` columns). This takes out the ``api_key`` of the ``wandb`` /
    ``swanlab`` blocks (as ``WANDB_API_KEY`` / ``SWANLAB_API_KEY``) and the
    ``param_space["secrets"]`` block, which trials then find in ``os.environ``. Other
    secret-looking values (``password``, ``token``, ... at any depth of ``param_space``, and
    in ``runtime_env["env_vars"]``, which Ray logs) get a RadasWarning saying how to hand
    them over instead. The inputs are not changed.

    >>> space, secrets = prepare_secrets({"lr": 0.1, "wandb": {"api_key": "k"},
    ...                                   "secrets": {"HF_TOKEN": "t"}})
    >>> space, sorted(secrets)
    ({'lr': 0.1, 'wandb': {}}, ['HF_TOKEN', 'WANDB_API_KEY'])
    """
    from radas.trackers.base import TRACKERS

    space = dict(param_space or {})
    secrets = _take_secrets_block(space)
    for tracker, spec in TRACKERS.items():
        block = space.get(tracker)
        if not isinstance(block, Mapping) or "grid_search" in block:  # a search space
            if _mentions_api_key(block):
                raise TrackerConfigError(
                    f'param_space["{tracker}"] holds an api_key inside a search space; it '
                    "would be stored with every trial's config. Give the key in a plain "
                    f'block, param_space["{tracker}"] = {{"enable": True, "api_key": ...}}, '
                    f"or export ${spec.api_key_env} and leave api_key out."
                )
            continue
        if "api_key" not in block:
            continue
        api_key = block["api_key"]
        space[tracker] = {key: value for key, value in block.items() if key != "api_key"}
        if api_key is None:
            continue
        if not isinstance(api_key, str) or not api_key.strip():
            raise TrackerConfigError(
                f'param_space["{tracker}"]["api_key"] must be a non-empty string or None, got '
                f"{type(api_key).__name__}: give the key itself (for example read from an "
                f"environment variable), or leave it out and export ${spec.api_key_env}."
            )
        given = secrets.setdefault(spec.api_key_env, api_key.strip())
        if given != api_key.strip():
            raise InvalidArgumentError(
                f'param_space["{tracker}"]["api_key"] and param_space["{SECRETS_BLOCK}"]'
                f'["{spec.api_key_env}"] differ: give the key in one place only.'
            )
    _warn_secret_looking(space, runtime_env or {})
    return space, secrets


def _take_secrets_block(space: dict[str, Any]) -> dict[str, str]:
    block = space.pop(SECRETS_BLOCK, None)
    example = f'param_space["{SECRETS_BLOCK}"] = {{"HF_TOKEN": os.environ["HF_TOKEN"]}}'
    if block is None:
        return {}
    if not isinstance(block, Mapping) or "grid_search" in block:
        raise InvalidArgumentError(
            f'param_space["{SECRETS_BLOCK}"] must be a plain dict of environment variable '
            f"names to secret strings (no search spaces), got {type(block).__name__}: for "
            f"example {example}; the trainable reads os.environ['HF_TOKEN']."
        )
    secrets: dict[str, str] = {}
    for name, value in block.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidArgumentError(
                f'param_space["{SECRETS_BLOCK}"] has the key {name!r}, which is not an '
                "environment variable name (letters, digits and _, not starting with a "
                f"digit): for example {example}."
            )
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(
                f'param_space["{SECRETS_BLOCK}"]["{name}"] must be a non-empty string (the '
                f"secret itself), got {type(value).__name__}: for example {example}."
            )
        secrets[name] = value
    return secrets


def _mentions_api_key(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "api_key" in value or any(_mentions_api_key(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_mentions_api_key(v) for v in value)
    categories = getattr(value, "categories", None)  # tune.choice([...])
    return isinstance(categories, (list, tuple)) and _mentions_api_key(list(categories))


def _warn_secret_looking(space: Mapping[str, Any], runtime_env: Mapping[str, Any]) -> None:
    how = (
        f'Hand secrets over instead: param_space["{SECRETS_BLOCK}"] = {{"NAME": value}} puts '
        "each into the trials' environment (os.environ['NAME'] in the trainable) and stores "
        "it nowhere; tracker keys go in the tracker block's api_key."
    )
    paths = secret_key_paths(space)
    if paths:
        _warn(
            f"param_space holds secret-looking value(s) at {', '.join(paths)}: every trial's "
            "config is stored in plain text (experiment_state*.json, radas's history, the "
            f"DataFrame's config/* columns). {how}"
        )
    env_vars = runtime_env.get("env_vars")
    names = [name for name in env_vars or {} if is_secret_key(name)]
    if names:
        _warn(
            f"runtime_env['env_vars'] holds secret-looking {', '.join(names)}: Ray keeps the "
            "runtime_env with the job (anyone with the cluster's token reads it) and writes "
            f"it to its logs (runtime_env_agent.log). {how}"
        )


def _warn(message: str) -> None:
    warn(message, stacklevel=4)


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
    from radas._ray_compat import pop_from_cluster_memory

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
    from radas._ray_compat import forget_registered_trainables

    forget_registered_trainables()
