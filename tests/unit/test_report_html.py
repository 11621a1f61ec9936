"""The report page without Ray: the HTML drawn from plain data (escaped, self-contained, each
column typed for sorting), and the clear errors of ``radas report`` for an experiment that is
not stored. The page in a real browser, on real experiments: tests/ray/test_report_page.py."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime

import pandas as pd
import pytest

from radas import cli
from radas.core.status import TrialCounts
from radas.errors import ExperimentNotFoundError
from radas.views.report_data import ReportData, SavedFigure, TrialRow
from radas.views.report_page import render_page, write_report

HOSTILE = "<script>alert('x')</script>"


def report_data(**changes) -> ReportData:
    history = pd.DataFrame(
        {
            "trial_id": ["t1", "t1", "t2"],
            "training_iteration": [1, 2, 1],
            "loss": [1.0, 0.5, 3.0],
        }
    )
    data = ReportData(
        name=f"lr {HOSTILE}",
        experiment_path="/results/alice/_lr",
        status="FINISHED, 1 of 2 trials errored",
        counts=TrialCounts(total=2, finished=1, errored=1),
        running=False,
        last_update=datetime(2026, 1, 2, 3, 4, 5),
        metric="loss",
        mode="min",
        metric_source="the experiment's metric",
        metrics=["loss"],
        config_keys=["lr", "name"],
        trials=[
            TrialRow("t1", "TERMINATED", {"lr": 0.1, "name": "b"}, {"loss": 0.5}, 0.5, 2),
            TrialRow("t2", "ERROR", {"lr": 10, "name": HOSTILE}, {"loss": 3.0}, 3.0, 1, "E"),
        ],
        history=history,
        figures=[
            SavedFigure("fig.svg", "/f/fig.svg", "image/svg+xml", b"<svg xmlns='x'/>"),
            SavedFigure("fig.pdf", "/f/fig.pdf", None),
        ],
        tracebacks={"t2": f"Traceback ...\nValueError: {HOSTILE}"},
    )
    for key, value in changes.items():
        setattr(data, key, value)
    return data


def test_the_page_is_self_contained_and_escapes_what_it_shows():
    page = render_page(report_data())
    assert HOSTILE not in page  # names, config values and tracebacks are text
    # the title, the heading, the config cell (its text and sort value), the traceback
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 5
    assert "default-src 'none'; img-src data:" in page  # the browser fetches nothing else
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith(("data:", "#error-")) for s in sources), sources
    assert "FINISHED, 1 of 2 trials errored" in page and "1 finished, 1 errored, 2 trials" in page
    assert 'last updated <span id="updated">2026-01-02 03:04:05' in page
    assert '<details id="error-t2" class="error">' in page and '<a href="#error-t2">' in page
    assert "fig.pdf: not shown here" in page and "data:image/svg+xml;base64," in page
    assert page.count('alt="loss of every trial"') == 1 and 'alt="loss of each trial"' in page


def test_each_column_says_how_it_sorts_and_each_cell_what_it_sorts_by():
    page = render_page(report_data())
    headers = re.findall(r'data-type="(\w+)" tabindex="0">([^<]+)</th>', page)
    assert headers == [
        ("text", "trial"),
        ("text", "status"),
        ("number", "reports"),
        ("number", "config/lr"),
        ("text", "config/name"),
        ("number", "loss (last)"),
        ("number", "loss (best, min)"),
    ]
    assert '<td class="num" data-value="10.0">10</td>' in page  # 10 sorts after 0.1 as a number


def test_no_reports_yet_and_no_trials_yet_render_with_a_word_instead_of_a_figure():
    empty = pd.DataFrame(columns=["trial_id", "training_iteration"])
    waiting = [TrialRow("t1", "RUNNING", {"lr": 0.1}, {}), TrialRow("t2", "PENDING", {"lr": 1}, {})]
    page = render_page(
        report_data(
            history=empty,
            metrics=[],
            metric=None,
            mode=None,
            trials=waiting,
            tracebacks={},
            figures=[],
            running=True,
            status="RUNNING, 0 of 2 trials finished",
        ),
        refresh_s=15,
    )
    assert "No reports yet" in page and "<img" not in page
    assert '<tr class="running">' in page and "The experiment is still running" in page
    assert '<meta http-equiv="refresh" content="15">' in page
    nothing = render_page(report_data(trials=[], history=empty, metric=None, tracebacks={}))
    assert "No trials stored yet." in nothing


@pytest.mark.integrity("error")
def test_a_name_not_stored_says_where_radas_looked_and_how_to_list_what_exists(
    project, capsys, radas_home
):
    assert cli.main(["report", "never-ran", "--user", "alice"]) == 1
    error = capsys.readouterr().err
    looked = radas_home / "ray-results" / "alice" / re.sub(r"\W", "_", f"{project}/never_ran")
    # the same lookup and words as radas watch
    assert f"No stored experiment 'never-ran' of user 'alice' run from {project}" in error
    assert f"radas looked in {looked} (the full name includes the directory it was run" in error
    assert "`radas ls" in error and "--user alice` lists the experiments of 'alice'" in error
    with pytest.raises(ExperimentNotFoundError, match=r"`radas ls` lists the experiments"):
        write_report(project / "not-an-experiment")
    assert cli.main(["report", "never-ran", "--dir", str(project / "missing")]) == 1
    error = capsys.readouterr().err
    assert f"--dir {project / 'missing'} does not exist" in error


@pytest.mark.integrity("error")
def test_an_output_that_cannot_be_a_file_is_refused_before_anything_is_read(project, capsys):
    assert cli.main(["report", "never-ran", "-o", str(project)]) == 1
    assert f"-o {project}: {project} is a directory; give a file name" in capsys.readouterr().err
    assert cli.main(["report", "never-ran", "-o", "nowhere/r.html"]) == 1
    error = capsys.readouterr().err
    assert f"the folder {project / 'nowhere'} does not exist" in error


def test_the_saved_figures_are_this_runs_own_and_not_another_experiments(tmp_path):
    from radas.views.report_data import _figures_of

    started = time.time() - 60
    for name in ("_p_lr.png", "_p_lr-2.png", "_p_lr.live.png", "_p_lr_2.png", "_p_lr-2.csv"):
        (tmp_path / name).write_bytes(b"x")
    earlier_run = started - 3600
    os.utime(tmp_path / "_p_lr.png", (earlier_run, earlier_run))
    # an earlier run's figure, another experiment's (_p_lr_2) and a CSV are left out
    assert [path.name for path in _figures_of(tmp_path, "_p_lr", started)] == [
        "_p_lr-2.png",
        "_p_lr.live.png",
    ]
    assert len(_figures_of(tmp_path, "_p_lr", None)) == 3  # no start recorded: all its own
