"""radas.notify.email: send_email over SMTP and the experiment notification mail.

A real SMTP server (aiosmtpd) listens on 127.0.0.1 on a free port; the mails it receives are
parsed and checked. The experiments are real local sweeps. The dead-server case uses a port
nothing listens on.
"""

from __future__ import annotations

import os
import socket
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import seaborn as sns
from ray import tune

import radas
from radas.errors import EmailConfigError, EmailError, InvalidArgumentError, RadasWarning
from radas.notify.email import (
    SmtpSettings,
    best_result,
    check_notification,
    experiment_summary,
    notify_experiment,
    send_email,
    smtp_settings,
)

SMTP_PASSWORD = "radas-test-smtp-password-7f3a9c"


class Inbox:
    """aiosmtpd handler that keeps every mail it is given."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list:
        return [message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]


def text_of(part) -> str:
    """A text part's content with the line endings it had before SMTP (CRLF on the wire)."""
    return part.get_content().replace("\r\n", "\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(**kwargs):
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller, inbox


@pytest.fixture
def smtp_server(monkeypatch, tmp_path):
    """A real SMTP server on 127.0.0.1, configured the way a user would: RADAS_SMTP_HOST /
    RADAS_SMTP_PORT, and a radas config of this test only."""
    controller, inbox = start_server()
    monkeypatch.setenv("RADAS_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("RADAS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("RADAS_SMTP_PORT", str(controller.port))
    yield inbox
    controller.stop()


@pytest.fixture
def dead_smtp(monkeypatch, tmp_path):
    monkeypatch.setenv("RADAS_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("RADAS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("RADAS_SMTP_PORT", str(free_port()))  # nothing listens there


def score(config):
    for step in range(1, 3):
        radas.report({"score": config["x"] * step})


def broken(config):
    raise ValueError(f"bad x={config['x']}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real, finished local sweep with a saved figure (run once for this module)."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("email-project"))
    try:
        yield radas.run_experiment_sync(
            user_name="mail-tester",
            experiment_name="mail-sweep",
            trainable=score,
            param_space={"x": tune.grid_search([1, 2])},
            tuner_init_kwargs=dict(tune_config=tune.TuneConfig(metric="score", mode="min")),
            run_choice="run",
            plot_fn=sns.barplot,
            plot_kwargs=dict(x="config/x", y="score"),
            plot_format="png",
        )
    finally:
        os.chdir(previous)


@pytest.mark.slow
def test_summary_mail_for_a_finished_experiment(finished, smtp_server, capsys):
    assert notify_experiment("alice@example.com", experiment_name="mail-sweep", results=finished)
    [envelope] = smtp_server.envelopes
    assert envelope.rcpt_tos == ["alice@example.com"]
    [mail] = smtp_server.messages
    assert mail["Subject"] == "[radas] mail-sweep FINISHED (2/2 trials done)"
    assert mail["To"] == "alice@example.com"
    body = text_of(mail.get_body(("plain",)))
    assert "radas experiment 'mail-sweep': FINISHED\n" in body
    assert "Trials:       2 total, 2 finished, 0 errored" in body
    assert f"Results:      {finished['experiment_path']}" in body
    # the best result follows the experiment's tune_config (metric score, mode min)
    assert "Best result (min score, from the experiment's tune_config):" in body
    assert "  score = 2" in body and "  config/x = 1" in body
    # the DataFrame's first rows
    assert "First rows of the DataFrame (2 rows x" in body
    assert finished["df"].head().to_string(max_cols=14, max_colwidth=40) in body
    # the saved figure, attached as it is on disk
    [attachment] = list(mail.iter_attachments())
    fig_path = Path(finished["fig_path"])
    assert attachment.get_filename() == fig_path.name
    assert attachment.get_content_type() == "image/png"
    assert attachment.get_content() == fig_path.read_bytes()
    out = capsys.readouterr().out
    assert "[radas] mail sent to alice@example.com: [radas] mail-sweep FINISHED" in out


@pytest.mark.slow
def test_summary_without_outcome_or_saved_figure_counts_from_the_tuner(finished):
    results = {**finished, "outcome": None, "fig_path": None}
    summary = experiment_summary(experiment_name="mail-sweep", results=results)
    assert summary.status == "FINISHED"
    assert "Trials:       2 total, 2 finished, 0 errored" in summary.body
    assert summary.best["value"] == 2  # the experiment's stored tune_config: min score
    [(name, content, mime_type)] = summary.attachments  # the Figure rendered to PNG
    assert (name, mime_type) == ("mail-sweep.png", "image/png")
    assert content.startswith(b"\x89PNG")


@pytest.mark.slow
def test_failure_mail_for_an_experiment_whose_trainable_raises(project, smtp_server):
    with pytest.raises(radas.AnalysisError) as caught:
        radas.run_experiment_sync(
            user_name="mail-tester",
            experiment_name="mail-broken",
            trainable=broken,
            param_space={"x": tune.grid_search([1, 2])},
            run_choice="run",
            plot_fn=sns.lineplot,
            plot_kwargs=dict(x="config/x", y="score"),  # no trial reported a score
        )
    error = caught.value
    assert notify_experiment("bob@example.com", experiment_name="mail-broken", error=error)
    [mail] = smtp_server.messages
    assert mail["Subject"] == "[radas] mail-broken FAILED: AnalysisError"
    body = text_of(mail.get_body(("plain",)))
    assert (
        "radas experiment 'mail-broken': FAILED (AnalysisError), 0 of 2 trials finished, 2 errored"
        in body
    )
    assert f"Error:        AnalysisError: {error}" in body
    assert f"Results:      {error.results['experiment_path']}" in body
    assert "Trials:       2 total, 0 finished, 2 errored" in body
    assert "Errored trials (2):" in body
    assert "ValueError: bad x=1" in body and "ValueError: bad x=2" in body
    assert "Traceback (last lines):" in body
    assert "Best result" not in body  # no metric/mode in its tune_config: none is guessed
    assert list(mail.iter_attachments()) == []


@pytest.mark.slow
def test_dead_smtp_server_gives_a_warning_and_keeps_the_results(finished, dead_smtp):
    df_before = finished["df"].copy()
    with pytest.warns(RadasWarning) as warned:
        sent = notify_experiment(
            "alice@example.com", experiment_name="mail-sweep", results=finished
        )
    assert sent is False
    [err] = [str(w.message) for w in warned]
    assert err.startswith("the notification mail about 'mail-sweep'")
    assert "Cannot reach the SMTP server 127.0.0.1:" in err
    assert f"results are not affected (stored at {finished['experiment_path']})" in err
    assert finished["df"].equals(df_before)
    assert Path(finished["fig_path"]).is_file()


def test_notify_never_raises_even_without_smtp_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("RADAS_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("RADAS_SMTP_HOST", raising=False)
    with pytest.warns(RadasWarning, match="No SMTP server is configured"):
        sent = notify_experiment("a@example.com", experiment_name="x", error=RuntimeError("boom"))
    assert sent is False


def test_a_radas_warning_shows_as_a_radas_line_and_obeys_the_filters(monkeypatch, tmp_path):
    """Outside pytest's capture (its catch_warnings records every warning), a RadasWarning
    is one [radas] line on stderr; filtered out, there is no line either."""
    import subprocess
    import sys

    script = (
        "import warnings, radas\n"
        "from radas.notify.email import check_notification\n"
        "check_notification('a@example.com')\n"
        "warnings.filterwarnings('ignore', category=radas.RadasWarning)\n"
        "check_notification('b@example.com')\n"
    )
    env = {**os.environ, "RADAS_CONFIG": str(tmp_path / "none.toml"), "PYTHONWARNINGS": ""}
    env.pop("RADAS_SMTP_HOST", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stderr.startswith(
        "[radas] warning: the notification mail to 'a@example.com' will not be sent: No SMTP"
    )
    assert done.stderr.count("\n") == 1 and "b@example.com" not in done.stderr


def test_send_email_with_attachments_and_several_recipients(tmp_path):
    controller, inbox = start_server()
    try:
        report = tmp_path / "report.csv"
        report.write_text("a,b\n1,2\n")
        message_id = send_email(
            "a@example.com, b@example.com",
            "subject line",
            "the body",
            attachments=[report, ("data.bin", b"\x00\x01")],
            smtp={"host": "127.0.0.1", "port": controller.port, "from_address": "r@lab.org"},
        )
    finally:
        controller.stop()
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["a@example.com", "b@example.com"]
    assert envelope.mail_from == "r@lab.org"
    [mail] = inbox.messages
    assert mail["Message-ID"] == message_id
    assert text_of(mail.get_body(("plain",))) == "the body\n"
    attachments = {part.get_filename(): part for part in mail.iter_attachments()}
    assert text_of(attachments["report.csv"]) == "a,b\n1,2\n"
    assert attachments["data.bin"].get_content() == b"\x00\x01"
    assert attachments["data.bin"].get_content_type() == "application/octet-stream"


def test_login_with_the_password_from_the_config_never_shows_it(monkeypatch, tmp_path, capsys):
    from aiosmtpd.smtp import AuthResult

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        ok = auth_data.password.decode() == SMTP_PASSWORD
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    controller, inbox = start_server(authenticator=authenticator, auth_require_tls=False)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {controller.port}\nsecurity = "none"\n'
        'user = "alice@lab.org"\npassword_env = "MY_SMTP_PASSWORD"\n'
    )
    monkeypatch.setenv("RADAS_CONFIG", str(config))
    for name in ("RADAS_SMTP_HOST", "RADAS_SMTP_PORT", "RADAS_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    warned = pytest.warns(RadasWarning, match="rejected the login")
    try:
        monkeypatch.setenv("MY_SMTP_PASSWORD", SMTP_PASSWORD)
        settings = smtp_settings()
        assert (settings.user, settings.password, settings.sender) == (
            "alice@lab.org",
            SMTP_PASSWORD,
            "alice@lab.org",
        )
        assert SMTP_PASSWORD not in repr(settings)
        send_email("bob@example.com", "hi", "body")
        monkeypatch.setenv("MY_SMTP_PASSWORD", "wrong-password-123")
        with pytest.raises(EmailError, match=r"rejected the login of user 'alice@lab\.org'"):
            send_email("bob@example.com", "hi", "body")
        with warned:
            sent = notify_experiment("bob@example.com", experiment_name="x", error=KeyError("k"))
        assert sent is False
    finally:
        controller.stop()
    # the right password once; then the wrong one (smtplib tries PLAIN, then LOGIN)
    assert logins[0] == ("alice@lab.org", SMTP_PASSWORD)
    assert len(logins) > 2
    assert set(logins[1:]) == {("alice@lab.org", "wrong-password-123")}
    assert len(inbox.envelopes) == 1
    output = capsys.readouterr()
    shown = output.out + output.err + "".join(str(w.message) for w in warned)
    for secret in (SMTP_PASSWORD, "wrong-password-123"):
        assert secret not in shown


def test_password_file_and_env_override(monkeypatch, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text(SMTP_PASSWORD + "\n")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[smtp]\nhost = "smtp.lab.org"\nuser = "alice"\npassword_file = "{password_file}"\n'
    )
    monkeypatch.setenv("RADAS_CONFIG", str(config))
    for name in ("RADAS_SMTP_HOST", "RADAS_SMTP_PORT", "RADAS_SMTP_PASSWORD", "RADAS_SMTP_USER"):
        monkeypatch.delenv(name, raising=False)
    settings = smtp_settings()
    assert (settings.host, settings.port, settings.security) == ("smtp.lab.org", 587, "starttls")
    assert settings.password == SMTP_PASSWORD
    assert settings.sender.startswith("radas@")  # "alice" is not an address
    monkeypatch.setenv("RADAS_SMTP_PORT", "465")
    monkeypatch.setenv("RADAS_SMTP_PASSWORD", "from-env")
    settings = smtp_settings()
    assert (settings.port, settings.security, settings.password) == (465, "ssl", "from-env")


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('host = "h"\nuser = "u"\npassword = "p"', "stores the password (password)"),
        ('host = "h"\nsender = "x"', "unknown key(s) ['sender']"),
        ("port = 25", "No SMTP server is configured"),
        ('host = "h"\nsecurity = "tls"', "security must be one of starttls, ssl, none"),
        ('host = "h"\nport = "abc"', "port must be a number"),
        ('host = "h"\nuser = "u"\npassword_env = "NOT_SET_X"', "$NOT_SET_X"),
    ],
)
def test_bad_smtp_tables_say_what_to_change(monkeypatch, tmp_path, table, words):
    config = tmp_path / "config.toml"
    config.write_text(f"[smtp]\n{table}\n")
    monkeypatch.setenv("RADAS_CONFIG", str(config))
    for name in ("RADAS_SMTP_HOST", "RADAS_SMTP_PASSWORD", "NOT_SET_X"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(EmailConfigError) as caught:
        smtp_settings()
    assert words in str(caught.value)
    assert '= "p"' not in str(caught.value)


def test_no_plain_text_password_to_a_remote_server():
    with pytest.raises(EmailConfigError, match="will not send the SMTP password unencrypted"):
        smtp_settings({"host": "smtp.lab.org", "port": 25, "user": "u", "password": "p"})
    local = smtp_settings({"host": "127.0.0.1", "port": 25, "user": "u", "password": "p"})
    assert isinstance(local, SmtpSettings) and local.security == "none"


@pytest.mark.parametrize("address", ["", "alice", ["a@b.c", "nope"], None])
def test_bad_addresses(address):
    with pytest.raises(InvalidArgumentError, match="is not a mail address"):
        send_email(address, "s", "b", smtp={"host": "127.0.0.1", "port": 1})


def test_best_result_rule():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "val_loss": [0.3, 0.1, 0.2],
            "accuracy": [0.7, 0.9, 0.8],
            "config/lr": [1, 2, 3],
            "pid": [9, 1, 5],
        }
    )
    given = best_result(frame, "accuracy", "max")
    assert (given["value"], given["row"]["trial_id"]) == (0.9, "b")
    assert given["row"] == {"accuracy": 0.9, "config/lr": 2, "trial_id": "b"}
    lowest = best_result(frame, "val_loss", "min")
    assert (lowest["metric"], lowest["mode"], lowest["row"]["config/lr"]) == ("val_loss", "min", 2)
    # only the metric and mode the user gave: none, or a metric without its mode, is no best
    assert best_result(frame, None, None) is None
    assert best_result(frame, "val_loss", None) is None
    assert best_result(frame, "missing", "max") is None


def test_a_summary_that_cannot_be_made_still_sends_a_short_mail(tmp_path):
    controller, inbox = start_server()
    try:
        sent = notify_experiment(
            "a@example.com",
            experiment_name="odd",
            results={"outcome": "not an outcome", "experiment_path": "/results/odd"},
            smtp={"host": "127.0.0.1", "port": controller.port},
        )
    finally:
        controller.stop()
    assert sent is True
    [mail] = inbox.messages
    assert mail["Subject"] == "[radas] odd ENDED (trials unknown: the summary could not be made)"
    body = text_of(mail.get_body(("plain",)))
    assert "Results:      /results/odd" in body
    assert "The full summary could not be made: AttributeError" in body


def test_check_notification_before_an_experiment(monkeypatch, tmp_path):
    monkeypatch.setenv("RADAS_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("RADAS_SMTP_HOST", raising=False)
    with pytest.raises(InvalidArgumentError, match="is not a mail address"):
        check_notification("alice at example.com")
    with pytest.warns(RadasWarning, match="will not be sent: No SMTP server is configured"):
        assert check_notification("alice@example.com") is False
    monkeypatch.setenv("RADAS_SMTP_HOST", "127.0.0.1")
    assert check_notification(["alice@example.com", "bob@example.com"]) is True


def test_run_experiment_mails_when_it_ends_and_when_it_fails(project, smtp_server, capsys):
    done = radas.run_experiment_sync(
        user_name="mail-tester",
        experiment_name="wired",
        trainable=score,
        param_space={"x": tune.grid_search([1, 2])},
        tuner_init_kwargs=dict(tune_config=tune.TuneConfig(metric="score", mode="min")),
        run_choice="run",
        plot_fn=sns.barplot,
        plot_kwargs=dict(x="config/x", y="score"),
        plot_format="png",
        email_notification_to_address="alice@example.com",
    )
    [mail] = smtp_server.messages
    assert mail["Subject"] == "[radas] wired FINISHED (2/2 trials done)"
    body = text_of(mail.get_body(("plain",)))
    assert "Trials:       2 total, 2 finished, 0 errored" in body
    assert f"Results:      {done['experiment_path']}" in body
    assert "Best result (min score" in body
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content() == Path(done["fig_path"]).read_bytes()

    def bad_plot(data, **kwargs):
        raise RuntimeError("plot broke")

    with pytest.raises(radas.AnalysisError, match="plot broke"):
        radas.run_experiment_sync(
            user_name="mail-tester",
            experiment_name="wired-fail",
            trainable=broken,
            param_space={"x": tune.grid_search([1, 2])},
            run_choice="run",
            plot_fn=bad_plot,
            email_notification_to_address="alice@example.com",
        )
    failure = smtp_server.messages[-1]
    assert failure["Subject"] == "[radas] wired-fail FAILED: AnalysisError"
    failure_body = text_of(failure.get_body(("plain",)))
    assert "2 total, 0 finished, 2 errored" in failure_body
    assert "ValueError: bad x=1" in failure_body


def test_run_experiment_with_a_bad_address_fails_before_running(project, smtp_server):
    with pytest.raises(InvalidArgumentError, match="not a mail address"):
        radas.run_experiment_sync(
            user_name="mail-tester",
            experiment_name="never",
            trainable=score,
            param_space={"x": 1},
            run_choice="run",
            email_notification_to_address="nobody",
        )
    assert smtp_server.envelopes == []


def test_run_experiment_with_a_dead_smtp_server_still_returns_results(project, dead_smtp):
    with pytest.warns(RadasWarning, match="the notification mail about 'deadmail'"):
        results = radas.run_experiment_sync(
            user_name="mail-tester",
            experiment_name="deadmail",
            trainable=score,
            param_space={"x": 1},
            run_choice="run",
            email_notification_to_address="a@example.com",
        )
    assert results["df"]["score"].tolist() == [2]
