"""Experiment and user names: what is allowed and how an experiment's full name is made."""

from __future__ import annotations

import getpass
import os
import re
import unicodedata

from radas.errors import InvalidNameError

USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_FULL_NAME_LENGTH = 200


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
    """A valid radas user name for whoever runs this: ``$RADAS_USER``, else the login name.

    Characters radas does not allow in user names become ``_``.
    """
    name = os.environ.get("RADAS_USER") or getpass.getuser()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64].strip(".") or "user"
    return validate_user_name(name)
