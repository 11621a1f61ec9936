"""``run_experiment(..., live=...)``: the figure redrawn from partial results while trials run.

The trials report again and again until a release file appears; the test writes it only
once it has seen the live figure refreshed (or its warnings) the number of times it checks,
so what it asserts never depends on how fast the machine is. In a notebook: test_notebook_live.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import seaborn as sns
from ray import tune

import radas
from radas.errors import RadasWarning
from support.waiting import wait_for

PNG_START = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


def reports_until_released(config):
    """Reports a falling loss every 0.2 s until the release file exists, then a last result
    with the column ``late`` too."""
    import os
    import time

    import radas

    step = 0
    while not os.path.exists(config["release"]):
        step += 1
        radas.report({"loss": 1.0 / step + config["i"], "step": step})
        time.sleep(0.2)
    radas.report({"loss": float(config["i"]), "step": step + 1, "late": 1.0})


class PngVersions:
    """The versions of a PNG file seen so far (its modification times), each read whole
    (opened once: the time and the bytes are of the same file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versions: set[int] = set()
        self.torn: list[int] = []  # sizes of reads that were not a whole PNG

    def look(self) -> int:
        try:
            with open(self.path, "rb") as stream:
                modified = os.fstat(stream.fileno()).st_mtime_ns
                data = stream.read()
        except FileNotFoundError:
            return 0
        if not (data.startswith(PNG_START) and data.endswith(PNG_END)):
            self.torn.append(len(data))
        self.versions.add(modified)
        return len(self.versions)


def release_when(condition: Callable[[], bool], release: Path, what: str) -> dict:
    """Touch ``release`` once ``condition()`` holds (or the wait failed: the box says so)."""
    box: dict = {}

    def watch() -> None:
        try:
            wait_for(condition, what=what)
            box["seen"] = True
        except BaseException as err:  # handed to the test
            box["error"] = err
        finally:
            release.touch()

    threading.Thread(target=watch, daemon=True).start()
    return box


def live_sweep(project: Path, name: str, **kwargs):
    kwargs.setdefault("plot_fn", sns.lineplot)
    kwargs.setdefault("plot_kwargs", dict(x="step", y="loss", hue="config/i"))
    return radas.run_experiment_sync(
        user_name="alice",
        experiment_name=name,
        trainable=reports_until_released,
        param_space={"i": tune.grid_search([0, 1]), "release": str(project / "release")},
        cpu_per_trial=0.5,
        run_choice="run",
        **kwargs,
    )


@pytest.mark.slow
@pytest.mark.timing
def test_a_scripts_live_figure_is_a_png_replaced_whole_while_trials_run(project, capsys):
    live_png = PngVersions(project / "curves.live.png")
    box = release_when(
        lambda: live_png.look() >= 3, project / "release", "the live figure drawn 3 times"
    )
    results = live_sweep(
        project,
        "live-script",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        plot_path=project / "curves.png",
        live=1,
    )
    assert box.get("seen"), box
    assert live_png.torn == []  # every read found a whole PNG
    output = capsys.readouterr().out
    assert output.count("[radas] live figure: ") == 1
    assert f"[radas] live figure: {live_png.path}, redrawn every 1 s" in output
    # the final figure, as without live; and written into the live file too
    assert results["fig"] is not None and results["fig_path"] == str(project / "curves.png")
    final = live_png.path.read_bytes()
    assert final.startswith(PNG_START) and final.endswith(PNG_END)
    assert sorted(path.name for path in project.iterdir()) == [
        "curves.live.png",
        "curves.png",
        "release",
    ]  # no temporary file left behind


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.integrity("survive")
def test_a_plot_fn_failing_on_partial_data_is_a_warning_per_refresh(project):
    with pytest.warns(RadasWarning) as record:

        def warned_twice() -> bool:
            said = [str(w.message) for w in record if "live figure" in str(w.message)]
            return len(said) >= 2

        box = release_when(warned_twice, project / "release", "two refreshes' warnings")
        # the column "late" comes with the trials' last result only
        results = live_sweep(
            project, "live-late", plot_kwargs=dict(x="config/i", y="late"), live=0.5
        )
    assert box.get("seen"), box
    said = [str(w.message) for w in record if "live figure" in str(w.message)]
    assert said[0].startswith("live figure not redrawn this time: plot_fn raised ValueError: ")
    assert "late" in said[0] and "\n" not in said[0]
    # the run went on to its end, and the final figure is drawn as without live
    assert set(results["df"]["status"]) == {"TERMINATED"}
    assert results["fig"] is not None and results["df"]["late"].tolist() == [1.0, 1.0]


ATTACH_SCRIPT = textwrap.dedent(
    """
    import sys
    import seaborn as sns
    import radas

    results = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="live-job",
        run_with="cluster:testcluster",
        run_choice="attach",
        plot_fn=sns.lineplot,
        plot_kwargs=dict(x="step", y="loss", hue="config/i"),
        plot_path=sys.argv[1],
        live=1,
    )
    print("attached figure:", results["fig"] is not None, results["df"]["status"].tolist())
    """
)


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timing
def test_a_cluster_job_is_drawn_live_by_its_run_and_by_an_attach_from_another_process(
    cluster, project
):
    job_png = PngVersions(project / "job.live.png")
    attach_png = PngVersions(project / "attached.live.png")
    job: dict = {}

    def run_job() -> None:
        try:
            job["results"] = live_sweep(
                project,
                "live-job",
                run_with="cluster:testcluster",
                tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
                plot_path=project / "job.png",
                live=1,
            )
        except BaseException as err:  # handed to the test
            job["error"] = err

    running = threading.Thread(target=run_job, daemon=True)
    running.start()
    attach = None
    try:
        wait_for(lambda: job_png.look() >= 1, what="the job's first live figure")
        (project / "attach.py").write_text(ATTACH_SCRIPT)
        attach = subprocess.Popen(
            [sys.executable, "attach.py", str(project / "attached.png")],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(
            lambda: job_png.look() >= 3 and attach_png.look() >= 3,
            what="both live figures drawn 3 times",
        )
    finally:
        (project / "release").touch()
        running.join(timeout=180)
        output = attach.communicate(timeout=180)[0] if attach is not None else ""
    assert "results" in job, job
    assert attach is not None and attach.returncode == 0, output
    assert f"live figure: {attach_png.path}, redrawn every 1 s" in output
    assert "attached figure: True ['TERMINATED', 'TERMINATED']" in output
    assert job_png.torn == [] and attach_png.torn == []
    assert job["results"]["fig"] is not None
    assert job["results"]["df"].groupby("trial_id").size().min() >= 3  # the history's rows
    # the report page beside the results, rewritten by both followers, last in its final state
    assert f"report page: {job['results']['experiment_path']}/report.html" in output
    page = (Path(job["results"]["experiment_path"]) / "report.html").read_text()
    assert "still running" not in page and 'http-equiv="refresh"' not in page
    assert "2 finished, 0 errored, 2 trials" in page
