"""Mail over SMTP: the settings (``smtp_settings``) and the transport (``send_email``), public
as ``radas.notify.email.send_email`` and ``radas.notify.email.smtp_settings``.

The settings come from the ``[smtp]`` table of the radas config file (``radas.core.config``),
overridden by ``RADAS_SMTP_*`` environment variables::

    [smtp]
    host = "smtp.example.com"
    port = 587                        # default: 465 for ssl, 587 for starttls, 25 for none
    security = "starttls"             # "starttls" | "ssl" | "none"; default from the port
    user = "alice@example.com"        # omit for a server that takes mail without login
    from_address = "alice@example.com"  # default: user if it is an address
    password_env = "RADAS_SMTP_PASSWORD"  # where the password comes from: an env var
    password_file = "~/.config/radas/smtp_password"  # and/or a file (one line, mode 600)
    timeout_s = 30

Variables: ``RADAS_SMTP_HOST``, ``RADAS_SMTP_PORT``, ``RADAS_SMTP_SECURITY``,
``RADAS_SMTP_USER``, ``RADAS_SMTP_FROM``, ``RADAS_SMTP_PASSWORD``. The password is looked up
in ``$RADAS_SMTP_PASSWORD``, then ``password_env``, then ``password_file``; it is never
stored in the config file, printed, or put in an error message. radas will not send it
unencrypted (``security = "none"``) except to a server on this machine.
"""

from __future__ import annotations

import ipaddress
import mimetypes
import os
import re
import smtplib
import socket
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from radas.core import config as _config
from radas.core.console import print_info, warn
from radas.errors import EmailConfigError, EmailError, InvalidArgumentError

SECURITY_MODES = {"starttls": 587, "ssl": 465, "none": 25}  # and each one's default port
CONFIG_KEYS = (
    "host",
    "port",
    "security",
    "user",
    "from_address",
    "password_env",
    "password_file",
    "timeout_s",
)
ENV_OVERRIDES = {key: f"RADAS_SMTP_{key.upper()}" for key in ("host", "port", "security", "user")}
ENV_OVERRIDES["from_address"] = "RADAS_SMTP_FROM"
PASSWORD_ENV = "RADAS_SMTP_PASSWORD"

# A path, or (filename, content) / (filename, content, mime type) for data made in memory.
Attachment = str | os.PathLike | tuple


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send mail. ``password`` is never shown (not in repr either)."""

    host: str
    port: int = 587
    security: str = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    from_address: str | None = None
    timeout_s: float = 30.0
    source: str = field(default="", repr=False, compare=False)  # for messages

    @property
    def sender(self) -> str:
        """``from_address``, else ``user`` if it is an address, else ``radas@<this host>``."""
        if self.from_address:
            return self.from_address
        if self.user and "@" in self.user:
            return self.user
        return f"radas@{socket.getfqdn() or 'localhost'}"


def smtp_settings(smtp: SmtpSettings | Mapping[str, Any] | None = None) -> SmtpSettings:
    """The SMTP settings to use: ``smtp`` when given (a SmtpSettings, or a dict with the
    ``[smtp]`` keys plus ``password``), else the radas config's ``[smtp]`` table overridden by
    the ``RADAS_SMTP_*`` variables.

    >>> smtp_settings({"host": "127.0.0.1", "port": 1025}).security
    'none'
    """
    if isinstance(smtp, SmtpSettings):
        return smtp
    if smtp is not None:
        if not isinstance(smtp, Mapping):
            raise EmailConfigError(
                f"smtp must be a radas.notify.email.SmtpSettings or a dict such as "
                f'{{"host": "smtp.example.com", "port": 587}}, got {type(smtp).__name__}.'
            )
        table = dict(smtp)
        password = table.pop("password", None)
        return _settings(table, source="the smtp= argument", password=password)
    path = _config.config_path()
    found = _config.read_config(EmailConfigError).get("smtp", {})
    if not isinstance(found, Mapping):
        raise EmailConfigError(f"'smtp' in {path} must be a table: [smtp] host = \"...\".")
    table = {key: _config.plain(value) for key, value in found.items()}
    table |= {key: os.environ[var].strip() for key, var in ENV_OVERRIDES.items() if _env(var)}
    if not table.get("host"):
        raise EmailConfigError(
            f"No SMTP server is configured: add an [smtp] table with host = ... (and port, "
            f"security, user, password_env) to {path}, or export RADAS_SMTP_HOST (and "
            "RADAS_SMTP_PORT, RADAS_SMTP_USER, RADAS_SMTP_PASSWORD)."
        )
    return _settings(table, source=f"[smtp] in {path} or the RADAS_SMTP_* variables")


def _env(variable: object) -> str:
    return os.environ.get(str(variable), "").strip() if variable else ""


def _settings(table: dict[str, Any], *, source: str, password: str | None = None) -> SmtpSettings:
    _config.refuse_secrets(
        table,
        where=source,
        what="the password",
        advice="Never put it in the config: remove it and name where it lives with "
        'password_env = "VAR" or password_file = "/path/to/file", or export '
        "RADAS_SMTP_PASSWORD.",
        error=EmailConfigError,
    )
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise EmailConfigError(
            f"{source} has unknown key(s) {unknown}; valid keys: {', '.join(CONFIG_KEYS)}."
        )
    host = str(table.get("host") or "").strip()
    if not host:
        raise EmailConfigError(f'{source} has no host: set host = "smtp.example.com".')
    port = table.get("port")
    if port is not None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise EmailConfigError(
                f"{source}: port must be a number such as 587, got {port!r}."
            ) from None
        if not 0 < port < 65536:
            raise EmailConfigError(f"{source}: port {port} is not a TCP port (1-65535).")
    security = table.get("security") or {465: "ssl", 587: "starttls", None: "starttls"}.get(
        port, "none"
    )
    security = str(security).lower()
    if security not in SECURITY_MODES:
        raise EmailConfigError(
            f"{source}: security must be one of {', '.join(SECURITY_MODES)}, got {security!r}."
        )
    timeout_s = table.get("timeout_s", 30.0)
    if not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise EmailConfigError(f"{source}: timeout_s must be a positive number of seconds.")
    user = str(table["user"]).strip() if table.get("user") else None
    if password is None and user:
        password = _find_password(table)
    if user and not password:
        places = [f"${name}" for name in (PASSWORD_ENV, table.get("password_env")) if name]
        places += [str(table["password_file"])] if table.get("password_file") else []
        raise EmailConfigError(
            f"SMTP user {user!r} is set ({source}) but no password was found in "
            f"{' or '.join(places)}: export the variable, or name a file with "
            'password_file = "..." (one line, mode 600), or remove user for a server that '
            "takes mail without login."
        )
    if password and not user:
        raise EmailConfigError(
            f'An SMTP password was found but no user to log in with: set user = "..." '
            f"({source}) or RADAS_SMTP_USER."
        )
    port = port or SECURITY_MODES[security]
    if password and security == "none" and not _is_loopback(host):
        raise EmailConfigError(
            f"radas will not send the SMTP password unencrypted to {host}:{port} "
            f'(security = "none", {source}): set security = "starttls" (port 587) or '
            '"ssl" (port 465).'
        )
    sender = str(table["from_address"]) if table.get("from_address") else None
    return SmtpSettings(host, port, security, user, password, sender, float(timeout_s), source)


def _find_password(table: Mapping[str, Any]) -> str | None:
    for variable in (PASSWORD_ENV, table.get("password_env")):
        if _env(variable):
            return _env(variable)
    if not table.get("password_file"):
        return None
    path = Path(str(table["password_file"])).expanduser()
    return (path.read_text().strip() or None) if path.is_file() else None


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send_email(
    to_address: str | Sequence[str],
    subject: str,
    body: str,
    attachments: Iterable[Attachment] | None = None,
    *,
    smtp: SmtpSettings | Mapping[str, Any] | None = None,
) -> str:
    """Send a plain-text mail, with attachments, over SMTP; returns its Message-ID.

    ``to_address``: one address, several separated by commas, or a list. ``attachments``:
    paths, or ``(filename, bytes)`` / ``(filename, bytes, "type/subtype")`` tuples. SMTP
    settings: ``smtp``, else the radas config's ``[smtp]`` table and ``RADAS_SMTP_*``
    variables (see the module docstring). Raises EmailConfigError for missing or wrong
    settings and EmailError when the server cannot be reached or refuses the mail.

    >>> send_email("alice@example.com", "sweep done", "see attached",  # doctest: +SKIP
    ...            attachments=["fig.png"], smtp={"host": "127.0.0.1", "port": 1025})
    """
    recipients = parse_recipients(to_address)
    settings = smtp_settings(smtp)
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    message.set_content(body)
    for filename, content, type_ in _attachments(attachments or ()):
        maintype, _, subtype = type_.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    refused = _deliver(message, settings, recipients)
    if refused:
        warn(f"the SMTP server refused {', '.join(sorted(refused))}; the mail went to the others.")
    print_info(f"mail sent to {', '.join(recipients)}: {subject}")
    return str(message["Message-ID"])


def parse_recipients(to_address: object) -> list[str]:
    if isinstance(to_address, str):
        to_address_list: Iterable[object] = to_address.split(",")
    else:
        to_address_list = to_address if isinstance(to_address, (list, tuple)) else []
    addresses = [str(part).strip() for part in to_address_list if str(part).strip()]
    if not addresses or not all(re.fullmatch(r"[^@\s]+@[^@\s]+", a) for a in addresses):
        raise InvalidArgumentError(
            f"to_address={to_address!r} is not a mail address: give one such as "
            "'alice@example.com', several separated by commas, or a list of them."
        )
    return addresses


def _attachments(items: Iterable[Attachment]) -> list[tuple[str, bytes, str]]:
    prepared = []
    for item in items:
        if isinstance(item, tuple):
            if len(item) not in (2, 3) or not isinstance(item[1], (bytes, bytearray)):
                raise InvalidArgumentError(
                    f"An attachment tuple must be (filename, bytes) or (filename, bytes, "
                    f"'type/subtype'), got {item!r:.80}."
                )
            name = str(item[0])
            prepared.append((name, bytes(item[1]), item[2] if len(item) == 3 else mime_type(name)))
            continue
        path = Path(item).expanduser()
        if not path.is_file():
            raise InvalidArgumentError(
                f"Attachment {str(path)!r} is not a file: give the path of an existing file, "
                "or (filename, bytes) for data made in memory."
            )
        prepared.append((path.name, path.read_bytes(), mime_type(path.name)))
    return prepared


def mime_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _deliver(message: EmailMessage, settings: SmtpSettings, recipients: list[str]) -> dict:
    """Send ``message``; the recipients the server refused (the others got it). Each way it
    can fail is an EmailError saying what to check (never showing the password)."""
    where = f"{settings.host}:{settings.port}"
    fix = f"check {settings.source}" if settings.source else "check the SMTP settings"
    try:
        if settings.security == "ssl":
            context = ssl.create_default_context()
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout_s, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
        with client:
            client.ehlo()
            if settings.security == "starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if settings.user:
                client.login(settings.user, settings.password or "")
            return client.send_message(message, from_addr=settings.sender, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as err:
        problem = (
            f"rejected the login of user {settings.user!r} ({err.smtp_code} "
            f"{_text(err.smtp_error)}): check the user and the password ({fix}; the password "
            "is not shown)"
        )
    except smtplib.SMTPNotSupportedError as err:
        problem = (
            f'does not support what was asked ({err}): with security = "starttls" it must '
            'offer STARTTLS; try security = "ssl" (port 465), or "none" for a server on this '
            f"machine ({fix})"
        )
    except smtplib.SMTPRecipientsRefused as err:
        refused = ", ".join(f"{address} ({code})" for address, (code, _) in err.recipients.items())
        problem = f"refused every recipient: {refused}. Check the address"
    except smtplib.SMTPSenderRefused as err:
        problem = (
            f"refused the sender {settings.sender!r} ({err.smtp_code} {_text(err.smtp_error)}): "
            f"set from_address to an address this server accepts ({fix})"
        )
    except smtplib.SMTPException as err:
        raise EmailError(f"Sending the mail through {where} failed: {err} ({fix}).") from None
    except ssl.SSLError as err:
        raise EmailError(
            f"TLS with the SMTP server {where} failed ({err}): check security "
            f'("ssl" for port 465, "starttls" for 587) ({fix}).'
        ) from None
    except OSError as err:
        raise EmailError(
            f"Cannot reach the SMTP server {where} ({err.__class__.__name__}: {err}): check "
            f"that it runs and that host and port are right ({fix})."
        ) from None
    raise EmailError(f"The SMTP server {where} {problem}.") from None


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
