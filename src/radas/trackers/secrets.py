"""Before anything is stored: ``prepare_secrets`` takes a run's secrets out of its
``param_space`` (tracker API keys, the ``secrets`` block) and warns about other
secret-looking values. How they then reach the trials: ``radas.core.secrets``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from radas.core.console import warn
from radas.core.secrets import ENV_NAME, SECRETS_BLOCK, is_secret_key, secret_key_paths
from radas.errors import InvalidArgumentError, TrackerConfigError
from radas.trackers.base import TRACKERS


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
        if not isinstance(name, str) or not ENV_NAME.match(name):
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
