"""Experiment and user names: what is allowed and how an experiment's full name is made."""

from __future__ import annotations

import getpass
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from radas.errors import ClusterConfigError, InvalidNameError, RadasError

if TYPE_CHECKING:
    from radas.core.spec import RunTarget

USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_FULL_NAME_LENGTH = 200
USER_ENV = "RADAS_USER"
CONFIG_USER_KEY = "user"  # at the top of the radas config file, before any table


def validate_user_name(user_name: object) -> str:
    """Return ``user_name`` if it can name a per-user directory, else raise InvalidNameError.

    >>> validate_user_name("alice")
    'alice'
    """
    if not isinstance(user_name, str) or not USER_NAME_PATTERN.fullmatch(user_name):
        raise InvalidNameError(
            f"user_name={user_name!r} is not valid: use 1 to 64 characters from letters, digits, "
            "'.', '_' and '-' (no spaces or '/'), for example user_name='alice'. "
            "radas.get_current_user_name() gives a valid name for the current login."
        )
    if set(user_name) == {"."}:
        raise InvalidNameError(
            f"user_name={user_name!r} is not valid: it must not consist of dots only."
        )
    return user_name


def full_experiment_name(experiment_name: object, cwd: str | None = None) -> str:
    """The experiment's full name: ``<cwd>/<experiment_name>`` with non-alphanumerics as ``_``.

    >>> full_experiment_name("my-exp", cwd="/home/u/proj")
    '_home_u_proj_my_exp'
    """
    if not isinstance(experiment_name, str) or not experiment_name.strip():
        raise InvalidNameError(
            f"experiment_name={experiment_name!r} is not valid: give a non-empty string that "
            "describes the experiment, for example experiment_name='lr-sweep'."
        )
    control = [c for c in experiment_name if unicodedata.category(c).startswith("C")]
    if control:
        raise InvalidNameError(
            f"experiment_name={experiment_name!r} is not valid: it contains the control or "
            f"invisible character(s) {''.join(dict.fromkeys(control))!r} (terminal escapes, "
            "NUL, newlines, tabs, ...). Use printable characters only, for example "
            "experiment_name='lr-sweep'."
        )
    cwd = os.getcwd() if cwd is None else cwd
    full_name = re.sub(r"[^A-Za-z0-9]", "_", f"{cwd.rstrip('/')}/{experiment_name}")
    if len(full_name) > MAX_FULL_NAME_LENGTH:
        raise InvalidNameError(
            f"The experiment's full name (working directory + experiment_name) is "
            f"{len(full_name)} characters long, over the limit of {MAX_FULL_NAME_LENGTH}: "
            "use a shorter experiment_name or run from a shorter directory path."
        )
    return full_name


def get_current_user_name() -> str:
    """The user radas acts for when none is given: ``$RADAS_USER``, else the ``user`` key at
    the top of the radas config file, else the login name (``default_user`` says which).

    A bad value of ``RADAS_USER`` or of the config key raises InvalidNameError naming where it
    came from; characters radas does not allow in user names become ``_`` in a login name.

    >>> radas.get_current_user_name()  # doctest: +SKIP
    'alice'
    """
    return default_user().name


@dataclass(frozen=True)
class DefaultUser:
    """The default user's name and where it came from (``source``: ``RADAS_USER``, ``user in
    <config file>`` or ``login name``), as ``radas ls`` prints it."""

    name: str
    source: str


def default_user() -> DefaultUser:
    """The default user and where it came from, by the one rule: ``$RADAS_USER``, else the
    ``user`` key at the top of the radas config file, else the login name."""
    if USER_ENV in os.environ:
        value = os.environ[USER_ENV]
        return DefaultUser(
            _checked_default(
                value,
                where=f"{USER_ENV}={value!r}",
                fix=f"export {USER_ENV}=alice, or unset {USER_ENV} to use the user key of the "
                "radas config or your login name",
            ),
            USER_ENV,
        )
    from radas.core.config import config_path, plain, read_config

    configured = read_config(ClusterConfigError).get(CONFIG_USER_KEY)
    if configured is not None:
        path = config_path()
        value = plain(configured)
        return DefaultUser(
            _checked_default(
                value,
                where=f"{CONFIG_USER_KEY} = {value!r} at the top of the radas config {path}",
                fix=f'write {CONFIG_USER_KEY} = "alice" above the first [table] there, or '
                "remove the key to use your login name",
            ),
            f"{CONFIG_USER_KEY} in {path}",
        )
    try:
        login = getpass.getuser()
    except (OSError, KeyError):  # no login name: no $USER/$LOGNAME and no passwd entry
        login = ""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", login)[:64].strip(".") or "user"
    return DefaultUser(validate_user_name(name), "login name")


def listing_hint(target: RunTarget, user_name: str) -> str:
    """The ``radas ls`` command that lists ``user_name``'s experiments where ``target`` keeps
    them, and where that is: "`radas ls --cluster dev` lists the experiments of 'alice' on
    cluster:dev." (``--user`` only when the default user is someone else)."""
    option, there = (
        (f" --cluster {target.cluster}", f"on {target}")
        if target.kind == "cluster"
        else ("", "stored on this machine")
    )
    return (
        f"`radas ls{option}{user_option(user_name)}` lists the experiments of {user_name!r} {there}"
    )


def user_option(user_name: str) -> str:
    """`` --user NAME`` when a command printed for ``user_name`` needs it (the default user
    is someone else, or cannot be told), else ""; for hints such as ``radas ls --cluster X``."""
    try:
        if default_user().name == user_name:
            return ""
    except RadasError:
        pass
    return f" --user {user_name}"


def _checked_default(value: object, *, where: str, fix: str) -> str:
    """``value`` when it is a valid user name, else InvalidNameError naming ``where`` it came
    from and how to ``fix`` it."""
    if isinstance(value, str) and USER_NAME_PATTERN.fullmatch(value) and set(value) != {"."}:
        return value
    why = "it is empty" if value == "" else "it is not a valid radas user name"
    raise InvalidNameError(
        f"The default radas user comes from {where}, but {why}: use 1 to 64 characters from "
        f"letters, digits, '.', '_' and '-' (not dots only; no spaces or '/'). Fix it: {fix}; "
        "or pass the user explicitly (--user NAME, user_name='alice')."
    )
