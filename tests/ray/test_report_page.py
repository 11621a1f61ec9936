"""The report page (issue 26 §3-4): ``radas report`` and ``write_report`` on real experiments
(a local sweep with an errored trial and several reports per trial; the same results in an
S3-compatible store, moto's server on 127.0.0.1; a damaged copy; a sweep still running with
no report yet), the page loaded from ``file://`` in a real headless chromium
(``support.browser``; skipped, saying why, where chromium is not installed).
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import seaborn as sns
from ray import tune

import radas
from radas import cli
from radas.core.naming import full_experiment_name
from radas.views.report_page import write_report
from support.browser import broken_images, browser, column_values, needs_chromium, open_page
from support.held_sweep import held_sweep
from support.waiting import wait_for

USER = "report-user"


def diverging(config: dict[str, Any]) -> None:
    """Five reports of a loss that falls with each step; lr=0.3 diverges at its third."""
    for step in range(1, 6):
        if config["lr"] == 0.3 and step == 3:
            raise ValueError("loss diverged at step 3 <script>alert('escaped?')</script>")
        loss = config["lr"] * 10 / step + config["width"] / 100
        radas.report({"loss": loss, "accuracy": 1 - loss / 10})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A finished local sweep of 4 trials (one errored after 2 reports), its metric loss
    (min), and the figure it saved; run once for the module."""
    folder = tmp_path_factory.mktemp("report-sweep")
    before = os.getcwd()
    os.chdir(folder)
    try:
        result = radas.run_experiment_sync(
            user_name=USER,
            experiment_name="lr-sweep",
            trainable=diverging,
            param_space={"lr": tune.grid_search([0.01, 0.1, 0.3]), "width": 16},
            cpu_per_trial=0.5,
            run_choice="run",
            tuner_init_kwargs={"tune_config": tune.TuneConfig(metric="loss", mode="min")},
            plot_fn=sns.lineplot,
            plot_kwargs=dict(x="config/lr", y="loss"),
            plot_format="png",
        )
        yield {"result": result, "cwd": folder}
    finally:
        os.chdir(before)


def errored_trial(result: Any) -> str:
    df = result.df
    return str(df.loc[df["status"] == "ERROR", "trial_id"].item())


@pytest.mark.slow
@needs_chromium()
def test_the_page_sorts_shows_every_figure_and_the_traceback_in_a_browser(sweep, tmp_path):
    result = sweep["result"]
    page_file = Path(write_report(result.experiment_path, tmp_path / "report.html"))
    assert page_file == tmp_path / "report.html"
    with browser() as launched, open_page(launched, page_file) as (page, recorded):
        status = page.inner_text("#status")
        assert "FINISHED, 1 of 3 trials errored" in status
        assert "2 finished, 1 errored, 3 trials" in status
        assert result.experiment_path in status
        # loss (last): 0.01 -> 0.18, 0.1 -> 0.36, the errored 0.3 -> 1.66 (its 2nd report)
        assert column_values(page, "#trial-table", "config/lr") == ["0.01", "0.1", "0.3"]
        page.click("th:text-is('loss (last)')")
        assert column_values(page, "#trial-table", "loss (last)") == ["0.18", "0.36", "1.66"]
        page.click("th:text-is('loss (last)')")  # again: the other way
        assert column_values(page, "#trial-table", "loss (last)") == ["1.66", "0.36", "0.18"]
        assert column_values(page, "#trial-table", "config/lr") == ["0.3", "0.1", "0.01"]
        page.click("th:text-is('reports')")  # numbers sort as numbers: 2 before 5
        assert column_values(page, "#trial-table", "reports") == ["2", "5", "5"]
        assert column_values(page, "#trial-table", "loss (best, min)")[0] == "1.66"

        images = page.eval_on_selector_all("img", "images => images.map(i => i.alt)")
        saved = Path(result.fig_path).name
        assert images == ["loss of every trial", "loss of each trial", saved]
        assert broken_images(page) == []

        trial_id = errored_trial(result)
        details = page.locator(f"#error-{trial_id}")
        assert details.get_attribute("open") is None  # collapsed until opened
        page.click(f"#trial-table a[href='#error-{trial_id}']")  # the table links to it
        details.locator("summary").click()
        traceback = details.locator("pre").inner_text()
        assert "Traceback" in traceback or "File " in traceback
        assert "ValueError: loss diverged at step 3 <script>alert('escaped?')</script>" in (
            traceback
        )
        assert recorded.dialogs == []  # the error's <script> is text, never run
        assert recorded.console_errors == [] and recorded.page_errors == []
        assert recorded.requests_other_than(page_file.as_uri()) == []


@pytest.mark.slow
def test_radas_report_writes_next_to_the_results_and_prints_where(sweep, capsys, monkeypatch):
    monkeypatch.chdir(sweep["cwd"])
    assert cli.main(["report", "lr-sweep", "--user", USER]) == 0
    expected = Path(sweep["result"].experiment_path) / "report.html"
    assert capsys.readouterr().out == f"report: {expected}\n"
    page = expected.read_text()
    assert "<title>radas report: lr-sweep</title>" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    # from elsewhere, with --dir and -o (relative to where the command runs)
    monkeypatch.chdir(sweep["cwd"].parent)
    argv = ["report", "lr-sweep", "--user", USER, "--dir", str(sweep["cwd"]), "-o", "lr.html"]
    assert cli.main(argv) == 0
    assert (sweep["cwd"].parent / "lr.html").read_text().count("<tr class=") == 3


@pytest.mark.slow
@needs_chromium()
def test_a_report_of_results_in_an_object_store(sweep, tmp_path, monkeypatch, capsys):
    import pyarrow.fs as pafs

    from support.moto_s3 import moto_s3_server

    result = sweep["result"]
    with moto_s3_server() as s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)  # no cluster names this store
        uri = s3.url(f"results/{USER}/{result.full_name}")
        pafs.copy_files(
            result.experiment_path,
            uri.removeprefix("s3://"),
            destination_filesystem=pafs.S3FileSystem(endpoint_override=s3.endpoint_url),
        )
        monkeypatch.chdir(tmp_path)
        assert cli.main(["report", uri]) == 0  # the store is not a folder to write it to
        written = tmp_path / "report-lr-sweep.html"
        assert capsys.readouterr().out == f"report: {written}\n"
    with browser() as launched, open_page(launched, written) as (page, recorded):
        assert "FINISHED, 1 of 3 trials errored" in page.inner_text("#status")
        assert page.inner_text("#stored") == uri
        assert sorted(column_values(page, "#trial-table", "loss (last)")) == [
            "0.18",
            "0.36",
            "1.66",
        ]
        assert page.locator("#errors details").count() == 1
        # the learning curves (the saved figure is on this machine, not in the store)
        assert page.eval_on_selector_all("img", "images => images.length") >= 2
        assert broken_images(page) == []
        assert recorded.console_errors == [] and recorded.page_errors == []
        assert recorded.requests_other_than(written.as_uri()) == []


@pytest.mark.integrity("survive")
@pytest.mark.slow
@needs_chromium()
def test_a_damaged_folder_still_renders_what_exists_with_a_note(sweep, tmp_path):
    damaged = tmp_path / sweep["result"].full_name
    shutil.copytree(sweep["result"].experiment_path, damaged)
    (damaged / "report.html").unlink(missing_ok=True)
    for state in damaged.glob("experiment_state-*.json"):  # every snapshot cut short
        state.write_bytes(state.read_bytes()[:100])
    (damaged / "radas_trials.json").write_text("{not json")  # and the trial records garbage
    page_file = Path(write_report(damaged, tmp_path / "damaged.html"))
    with browser() as launched, open_page(launched, page_file) as (page, recorded):
        notes = page.inner_text("#notes")
        assert "What could not be read" in notes
        assert "experiment_state" in notes and "radas_trials.json" in notes
        assert "(some files damaged: see the notes)" in page.inner_text("#status")
        # the trials come back from the history: every one, its last loss, how it ended lost
        assert sorted(column_values(page, "#trial-table", "loss (last)")) == [
            "0.18",
            "0.36",
            "1.66",
        ]
        assert set(column_values(page, "#trial-table", "status")) == {"UNKNOWN"}
        assert broken_images(page) == []
        assert recorded.console_errors == [] and recorded.page_errors == []


WAITING_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import radas
    from ray import tune

    def waits(config):
        while not os.path.exists(config["release"]):  # no report until released
            time.sleep(0.1)
        for loss in (1.0, 0.5):
            radas.report({"loss": loss})

    radas.run_experiment_sync(
        user_name="report-user",
        experiment_name="not-yet",
        trainable=waits,
        param_space={"i": tune.grid_search([0, 1]), "release": sys.argv[1]},
        cpu_per_trial=0.5,
        run_choice="run",
        dos=["run"],
    )
    """
)


@pytest.mark.integrity("survive")
@pytest.mark.slow
def test_a_running_experiment_with_no_reports_yet_renders_and_then_refreshes(project):
    with held_sweep(project, WAITING_SCRIPT) as sweep:
        path = Path(radas.get_ray_results_dir(USER)) / full_experiment_name(
            "not-yet", cwd=str(project)
        )
        wait_for(
            lambda: _statuses(path) == ["RUNNING", "RUNNING"],
            what="both trials to run, reporting nothing",
        )
        page_file = Path(write_report(path, refresh_s=10))
        assert page_file == path / "report.html"
        page = page_file.read_text()
        assert "The experiment is still running" in page
        assert "RUNNING, 0 of 2 trials finished" in page
        assert '<meta http-equiv="refresh" content="10">' in page  # reloads while it runs
        assert "No reports yet" in page and page.count('<tr class="running">') == 2
        sweep.finish()
    page = Path(write_report(path, refresh_s=10)).read_text()
    assert "FINISHED" in page and "still running" not in page
    assert 'http-equiv="refresh"' not in page  # ended: nothing changes any more
    assert "No reports yet" not in page and page.count('alt="loss of every trial"') == 1


def _statuses(path: Path) -> list[str]:
    """The statuses of the experiment's trials as the page reads them ([] before it starts)."""
    from radas.views.report_data import read_report_data

    try:
        return sorted(trial.status for trial in read_report_data(path).trials)
    except radas.ExperimentNotFoundError:
        return []
