"""Email: ``send_email`` over SMTP, and the summary mail when an experiment ends or fails.

SMTP settings come from the ``[smtp]`` table of the radas config file (``$RADAS_CONFIG``,
else ``~/.config/radas/config.toml``), overridden by ``RADAS_SMTP_*`` environment variables::

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

This module is ``radas.email``; the standard library's ``email`` package is imported by its
absolute name.
"""

from __future__ import annotations

import io
import ipaddress
import mimetypes
import os
import re
import smtplib
import socket
import ssl
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from radas import _ray_state
from radas._status import TrialCounts, experiment_status
from radas.console import print_info, print_warning
from radas.errors import EmailConfigError, EmailError, InvalidArgumentError

SECURITY_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
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
ENV_OVERRIDES = {
    "host": "RADAS_SMTP_HOST",
    "port": "RADAS_SMTP_PORT",
    "security": "RADAS_SMTP_SECURITY",
    "user": "RADAS_SMTP_USER",
    "from_address": "RADAS_SMTP_FROM",
}
PASSWORD_ENV = "RADAS_SMTP_PASSWORD"
HEAD_ROWS = 10
TRACEBACK_LINES = 25

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
        """The From address: ``from_address``, else ``user`` if it is an address, else
        ``radas@<this host>``."""
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
                f"smtp must be a radas.email.SmtpSettings or a dict such as "
                f'{{"host": "smtp.example.com", "port": 587}}, got {type(smtp).__name__}.'
            )
        table = dict(smtp)
        password = table.pop("password", None)
        return _settings_from_table(table, source="the smtp= argument", password=password)
    from radas.clusters.config import config_path

    path = config_path()
    table = _read_smtp_table(path)
    for key, variable in ENV_OVERRIDES.items():
        if os.environ.get(variable, "").strip():
            table[key] = os.environ[variable].strip()
    source = f"[smtp] in {path} or the RADAS_SMTP_* variables"
    if not table.get("host"):
        raise EmailConfigError(
            f"No SMTP server is configured: add an [smtp] table with host = ... (and port, "
            f"security, user, password_env) to {path}, or export RADAS_SMTP_HOST (and "
            "RADAS_SMTP_PORT, RADAS_SMTP_USER, RADAS_SMTP_PASSWORD)."
        )
    return _settings_from_table(table, source=source, password=None)


def _read_smtp_table(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import tomlkit

    try:
        document = tomlkit.parse(path.read_text())
    except Exception as err:
        raise EmailConfigError(f"Cannot parse the radas config {path}: {err}") from err
    table = document.get("smtp")
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise EmailConfigError(f"'smtp' in {path} must be a table: [smtp] host = \"...\".")
    return {
        key: value.unwrap() if hasattr(value, "unwrap") else value for key, value in table.items()
    }


def _settings_from_table(
    table: dict[str, Any], *, source: str, password: str | None
) -> SmtpSettings:
    secrets = [key for key in table if key.lower() in ("password", "pass", "passwd", "secret")]
    if secrets:
        raise EmailConfigError(
            f"{source} stores the password ({', '.join(secrets)}). Never put it in the config: "
            'remove it and name where it lives with password_env = "VAR" or '
            'password_file = "/path/to/file", or export RADAS_SMTP_PASSWORD.'
        )
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise EmailConfigError(
            f"{source} has unknown key(s) {unknown}; valid keys: {', '.join(CONFIG_KEYS)}."
        )
    host = str(table.get("host") or "").strip()
    if not host:
        raise EmailConfigError(f'{source} has no host: set host = "smtp.example.com".')
    security = table.get("security")
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
    if security is None:
        security = {465: "ssl", 587: "starttls", None: "starttls"}.get(port, "none")
    security = str(security).lower()
    if security not in SECURITY_MODES:
        raise EmailConfigError(
            f"{source}: security must be one of {', '.join(SECURITY_MODES)}, got {security!r}."
        )
    if port is None:
        port = DEFAULT_PORTS[security]
    timeout_s = table.get("timeout_s", 30.0)
    if not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise EmailConfigError(f"{source}: timeout_s must be a positive number of seconds.")
    user = str(table["user"]).strip() if table.get("user") else None
    if password is None and user:
        password = _find_password(table)
    if user and not password:
        places = [f"${PASSWORD_ENV}"]
        if table.get("password_env"):
            places.append(f"${table['password_env']}")
        if table.get("password_file"):
            places.append(str(table["password_file"]))
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
    settings = SmtpSettings(
        host=host,
        port=port,
        security=security,
        user=user,
        password=password,
        from_address=str(table["from_address"]) if table.get("from_address") else None,
        timeout_s=float(timeout_s),
        source=source,
    )
    if settings.password and settings.security == "none" and not _is_loopback(host):
        raise EmailConfigError(
            f"radas will not send the SMTP password unencrypted to {host}:{port} "
            f'(security = "none", {source}): set security = "starttls" (port 587) or '
            '"ssl" (port 465).'
        )
    return settings


def _find_password(table: Mapping[str, Any]) -> str | None:
    for variable in (PASSWORD_ENV, table.get("password_env")):
        if variable and os.environ.get(str(variable), "").strip():
            return os.environ[str(variable)].strip()
    password_file = table.get("password_file")
    if password_file:
        path = Path(str(password_file)).expanduser()
        if path.is_file():
            return path.read_text().strip() or None
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
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
    recipients = _recipients(to_address)
    settings = smtp_settings(smtp)
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    domain = settings.sender.rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body)
    for filename, content, mime_type in _attachments(attachments or ()):
        maintype, _, subtype = mime_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    refused = _deliver(message, settings, recipients)
    if refused:
        print_warning(
            f"the SMTP server refused {', '.join(sorted(refused))}; the mail went to the others."
        )
    print_info(f"mail sent to {', '.join(recipients)}: {subject}")
    return str(message["Message-ID"])


def check_notification(
    to_address: str | Sequence[str], *, smtp: SmtpSettings | Mapping[str, Any] | None = None
) -> bool:
    """Check before an experiment starts that its notification mail can be sent later.

    A malformed ``to_address`` raises InvalidArgumentError (nothing has run yet). SMTP
    settings that are missing or wrong print a warning and give False; the experiment should
    run anyway. Nothing is sent and no server is contacted.

    >>> check_notification("not an address")
    Traceback (most recent call last):
    ...
    radas.errors.InvalidArgumentError: to_address='not an address' is not a mail address: ...
    """
    _recipients(to_address)
    try:
        smtp_settings(smtp)
    except EmailConfigError as err:
        print_warning(f"the notification mail to {to_address!r} will not be sent: {err}")
        return False
    return True


def _recipients(to_address: object) -> list[str]:
    if isinstance(to_address, str):
        addresses = [part.strip() for part in to_address.split(",")]
    elif isinstance(to_address, (list, tuple)):
        addresses = [str(part).strip() for part in to_address]
    else:
        addresses = []
    addresses = [address for address in addresses if address]
    bad = [address for address in addresses if not re.fullmatch(r"[^@\s]+@[^@\s]+", address)]
    if not addresses or bad:
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
            filename, content = str(item[0]), bytes(item[1])
            mime_type = item[2] if len(item) == 3 else _guess_type(filename)
        else:
            path = Path(item).expanduser()
            if not path.is_file():
                raise InvalidArgumentError(
                    f"Attachment {str(path)!r} is not a file: give the path of an existing "
                    "file, or (filename, bytes) for data made in memory."
                )
            filename, content, mime_type = path.name, path.read_bytes(), _guess_type(path.name)
        prepared.append((filename, content, mime_type))
    return prepared


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _deliver(message: EmailMessage, settings: SmtpSettings, recipients: list[str]) -> dict:
    where = f"{settings.host}:{settings.port}"
    fix = f"check {settings.source}" if settings.source else "check the SMTP settings"
    try:
        if settings.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout_s,
                context=ssl.create_default_context(),
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
        raise EmailError(
            f"The SMTP server {where} rejected the login of user {settings.user!r} "
            f"({err.smtp_code} {_text(err.smtp_error)}): check the user and the password "
            f"({fix}; the password is not shown)."
        ) from None
    except smtplib.SMTPNotSupportedError as err:
        raise EmailError(
            f"The SMTP server {where} does not support what was asked ({err}): with "
            'security = "starttls" it must offer STARTTLS; try security = "ssl" (port 465), '
            f'or "none" for a server on this machine ({fix}).'
        ) from None
    except smtplib.SMTPRecipientsRefused as err:
        refused = ", ".join(f"{address} ({code})" for address, (code, _) in err.recipients.items())
        raise EmailError(
            f"The SMTP server {where} refused every recipient: {refused}. Check the address."
        ) from None
    except smtplib.SMTPSenderRefused as err:
        raise EmailError(
            f"The SMTP server {where} refused the sender {settings.sender!r} ({err.smtp_code} "
            f"{_text(err.smtp_error)}): set from_address to an address this server accepts "
            f"({fix})."
        ) from None
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


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class ExperimentSummary:
    """What the notification mail says: plain data, built before anything is sent."""

    subject: str
    body: str
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)
    status: str = ""
    best: dict[str, Any] | None = None


def notify_experiment(
    to_address: str | Sequence[str],
    *,
    experiment_name: str,
    results: Mapping[str, Any] | None = None,
    error: BaseException | None = None,
    smtp: SmtpSettings | Mapping[str, Any] | None = None,
    metric: str | None = None,
    mode: str | None = None,
) -> bool:
    """Mail the summary of an experiment that ended (``results``) or failed (``error``).

    The mail says the status, the trial counts, the best result, the first rows of the
    DataFrame and where the results are stored, with the figure attached; a failure mail
    gives the error and the end of its traceback. ``results`` is what ``run_experiment``
    returns. The best result uses ``metric`` / ``mode`` (the ``tune_config``'s), else the
    ones stored with the experiment, else a metric whose name says its direction (``loss``,
    ``error`` are minimised; ``acc``, ``score``, ``reward`` maximised). Returns True when
    the mail was sent; any failure (settings, server) is printed as a warning and gives
    False: it never raises, so the experiment's results are never lost to a mail problem.

    >>> notify_experiment("alice@example.com", experiment_name="lr-sweep",  # doctest: +SKIP
    ...                   results=results)
    True
    """
    try:
        try:
            summary = experiment_summary(
                experiment_name=experiment_name,
                results=results,
                error=error,
                metric=metric,
                mode=mode,
            )
        except Exception as err:  # a broken summary must not cost the mail itself
            summary = _minimal_summary(experiment_name, results, error, err)
        send_email(to_address, summary.subject, summary.body, summary.attachments, smtp=smtp)
        return True
    except Exception as err:
        stored = _experiment_path(results, error)
        kept = f" The experiment's results are not affected (stored at {stored})." if stored else ""
        print_warning(
            f"the notification mail about {experiment_name!r} to {to_address!r} was not sent: "
            f"{err}{kept}"
        )
        return False


def experiment_summary(
    *,
    experiment_name: str,
    results: Mapping[str, Any] | None = None,
    error: BaseException | None = None,
    metric: str | None = None,
    mode: str | None = None,
) -> ExperimentSummary:
    """The notification mail's subject, body and attachments (see ``notify_experiment``)."""
    if results is None and error is not None:
        results = getattr(error, "results", None) or None
    results = dict(results or {})
    outcome = results.get("outcome")
    tuner = results.get("tuner")
    raw = _safe(lambda: tuner.get_dataframe() if tuner is not None else None)
    raw_df = raw if hasattr(raw, "columns") else None
    counts = _status_counts(raw_df)
    total, finished, errored = _trial_numbers(outcome, counts)
    trials = TrialCounts(total, finished, errored) if total is not None else None
    status = experiment_status(
        "FAILED" if error is not None else "ENDED",
        trials,
        unknown="no trials could be read",
        failure=type(error).__name__,
    )
    done = f" ({finished}/{total} trials done)" if total is not None else ""
    if error is not None:
        subject = f"[radas] {experiment_name} FAILED: {type(error).__name__}"
    else:
        subject = f"[radas] {experiment_name} {status}{done}"

    lines = [f"radas experiment {experiment_name!r}: {status}", ""]
    if error is not None:
        lines += [f"Error:        {type(error).__name__}: {error}"]
    if total is not None:
        detail = f"{total} total, {finished} finished, {errored} errored"
        others = {key: value for key, value in counts.items() if key not in ("TERMINATED", "ERROR")}
        if others:
            detail += ", " + ", ".join(f"{value} {key}" for key, value in sorted(others.items()))
        if outcome is not None and outcome.already_done:
            detail += f" ({outcome.already_done} were already done before this restore)"
        lines.append(f"Trials:       {detail}")
    if outcome is not None and outcome.seconds:
        lines.append(f"Duration:     {outcome.seconds:.1f} s")
    if results.get("run_with"):
        lines.append(
            f"Run with:     {results['run_with']} (run_choice={results.get('run_choice')!r})"
        )
    stored = _experiment_path(results, error)
    if stored:
        lines.append(f"Results:      {stored}")
    job_id = getattr(error, "job_id", None)
    if job_id:
        lines.append(f"Job id:       {job_id}")
    lines.append(f"Sent from:    {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}")

    best = _safe(lambda: best_result(raw_df, metric, mode, results)) if raw_df is not None else None
    if isinstance(best, dict):
        lines += ["", f"Best result ({best['mode']} {best['metric']}{best['how']}):"]
        lines += [f"  {key} = {value}" for key, value in best["row"].items()]
    elif raw_df is not None and error is None:
        lines += [
            "",
            "Best result: no metric to rank by; pass tuner_init_kwargs=dict(tune_config="
            "tune.TuneConfig(metric=..., mode=...)) to name one.",
        ]

    errors = _safe(lambda: _trial_errors(raw_df))
    if isinstance(errors, list) and errors:
        lines += ["", f"Errored trials ({len(errors)}):"]
        lines += [f"  {trial_id}: {text}" for trial_id, text in errors[:HEAD_ROWS]]

    df = results.get("df")
    if df is None:
        df = _safe(lambda: tuner.get_brief_dataframe() if tuner is not None else None)
    if hasattr(df, "head"):
        lines += [
            "",
            f"First rows of the DataFrame ({len(df)} rows x {len(df.columns)} columns):",
            _safe(lambda: df.head(HEAD_ROWS).to_string(max_cols=14, max_colwidth=40)),
        ]

    attachments: list[tuple[str, bytes, str]] = []
    figure = _safe(lambda: _figure_attachment(results, experiment_name))
    if isinstance(figure, tuple):
        attachments.append(figure)
        lines += ["", f"Figure:       attached ({figure[0]})"]
        if results.get("fig_path"):
            lines.append(f"              saved at {results['fig_path']}")

    if error is not None:
        lines += ["", "Traceback (last lines):", _traceback_tail(error)]
        logs_tail = getattr(error, "logs_tail", "")
        if logs_tail:
            tail = "\n".join(str(logs_tail).splitlines()[-TRACEBACK_LINES:])
            lines += ["", "End of the job's output:", tail]
    if stored:
        lines += [
            "",
            "Re-analyze without re-running: run_experiment(..., dos=['analyze']); continue "
            "unfinished or errored trials: run_choice='restore'.",
        ]
    return ExperimentSummary(
        subject=subject,
        body="\n".join(str(line) for line in lines) + "\n",
        attachments=attachments,
        status=status,
        best=best if isinstance(best, dict) else None,
    )


def _minimal_summary(
    experiment_name: str,
    results: Mapping[str, Any] | None,
    error: BaseException | None,
    problem: BaseException,
) -> ExperimentSummary:
    status = experiment_status(
        "FAILED" if error is not None else "ENDED",
        None,
        unknown="the summary could not be made",
        failure=type(error).__name__,
    )
    lines = [f"radas experiment {experiment_name!r}: {status}", ""]
    if error is not None:
        lines.append(f"Error:        {type(error).__name__}: {error}")
    stored = _experiment_path(results, error)
    if stored:
        lines.append(f"Results:      {stored}")
    lines.append(f"(The full summary could not be made: {type(problem).__name__}: {problem})")
    subject = f"[radas] {experiment_name} " + (
        f"FAILED: {type(error).__name__}" if error is not None else status
    )
    return ExperimentSummary(subject=subject, body="\n".join(lines) + "\n", status=status)


def _safe(make: Any) -> Any:
    """A part of the summary, or a note that it could not be made (the mail still goes)."""
    try:
        return make()
    except Exception as err:
        return f"(not available: {type(err).__name__}: {err})"


def _trial_errors(raw_df: Any) -> list[tuple[str, str]]:
    if raw_df is None or "error" not in raw_df.columns:
        return []
    failed = raw_df[raw_df["error"].notna()]
    return [(str(row.get("trial_id")), str(row["error"])) for _, row in failed.iterrows()]


def _status_counts(raw_df: Any) -> dict[str, int]:
    if raw_df is None or "status" not in raw_df.columns:
        return {}
    return {str(key): int(value) for key, value in raw_df["status"].value_counts().items()}


def _trial_numbers(outcome: Any, counts: dict[str, int]) -> tuple[int | None, int, int]:
    if outcome is not None:
        return outcome.total_trials, outcome.finished_trials, outcome.errored_trials
    if counts:
        return sum(counts.values()), counts.get("TERMINATED", 0), counts.get("ERROR", 0)
    return None, 0, 0


def _experiment_path(results: Mapping[str, Any] | None, error: BaseException | None) -> str:
    for source in (results, getattr(error, "results", None)):
        if isinstance(source, Mapping) and source.get("experiment_path"):
            return str(source["experiment_path"])
    return ""


MINIMIZED = re.compile(r"loss|err|mse|mae|rmse|perplexity|ppl|regret|cost|time|latency")
MAXIMIZED = re.compile(r"acc|score|reward|return|auc|f1|precision|recall|bleu|iou|map|r2")
NOT_METRICS = {"trial_id", "training_iteration", "status", "error"}


def best_result(
    raw_df: Any,
    metric: str | None,
    mode: str | None,
    results: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The best trial of ``raw_df`` (``radas.Tuner.get_dataframe()``) as plain data:
    ``{"metric", "mode", "value", "how", "row"}`` with the metric, ``config/*`` and
    ``trial_id`` of that trial; None when there is no metric to rank by.

    ``metric``/``mode`` when given; else the ``tune_config``'s stored with the experiment;
    else the first reported metric whose name says its direction (``loss``, ``error``,
    ``mse``... minimised; ``acc``, ``score``, ``reward``, ``f1``... maximised).
    """
    import pandas as pd

    if raw_df is None or raw_df.empty:
        return None
    how = ""
    if metric is None and results is not None and results.get("experiment_path"):
        metric, stored_mode = _ray_state.stored_metric_and_mode(results["experiment_path"])
        mode = mode or stored_mode
        how = ", from the experiment's tune_config" if metric else ""
    if metric is None:
        metric, mode = _guess_metric(raw_df)
        how = ", guessed from its name" if metric else ""
    if metric is None or metric not in raw_df.columns:
        return None
    if mode not in ("min", "max"):
        mode = "min" if MINIMIZED.search(metric.lower()) else "max"
    values = pd.to_numeric(raw_df[metric], errors="coerce")
    if values.notna().sum() == 0:
        return None
    index = values.idxmin() if mode == "min" else values.idxmax()
    row = raw_df.loc[index]
    shown = {metric: row[metric]}
    shown.update({key: row[key] for key in raw_df.columns if str(key).startswith("config/")})
    for key in ("trial_id", "training_iteration"):
        if key in raw_df.columns:
            shown[key] = row[key]
    return {"metric": metric, "mode": mode, "value": row[metric], "how": how, "row": shown}


def _guess_metric(raw_df: Any) -> tuple[str | None, str | None]:
    import pandas as pd

    from radas.tuner import BOOKKEEPING_COLUMNS

    for column in raw_df.columns:
        name = str(column)
        if (
            name in NOT_METRICS
            or name in BOOKKEEPING_COLUMNS
            or name.startswith("config/")
            or not pd.api.types.is_numeric_dtype(raw_df[column])
            or pd.api.types.is_bool_dtype(raw_df[column])
        ):
            continue
        if MINIMIZED.search(name.lower()):
            return name, "min"
        if MAXIMIZED.search(name.lower()):
            return name, "max"
    return None, None


def _figure_attachment(
    results: Mapping[str, Any], experiment_name: str
) -> tuple[str, bytes, str] | None:
    fig_path = results.get("fig_path")
    if fig_path and Path(fig_path).is_file():
        path = Path(fig_path)
        return path.name, path.read_bytes(), _guess_type(path.name)
    figure = results.get("fig")
    if figure is None or not hasattr(figure, "savefig"):
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name).strip("_") or "figure"
    return f"{name}.png", buffer.getvalue(), "image/png"


def _traceback_tail(error: BaseException) -> str:
    """The chain of causes, then the end of the innermost cause's traceback (where it broke)."""
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    lines = [f"Caused by: {type(cause).__name__}: {cause}" for cause in chain[1:]]
    root = chain[-1]
    frames = traceback.format_exception(type(root), root, root.__traceback__, chain=False)
    tail = "".join(frames).rstrip().splitlines()[-TRACEBACK_LINES:]
    return "\n".join([*lines, *(["", *tail] if lines else tail)])
