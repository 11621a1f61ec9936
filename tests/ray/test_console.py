"""Issue 13 §3-4: a quiet console that radas owns, and a progress line that keeps coming.

A sweep prints radas's lines and the trainable's own prints; Ray's log records only when asked
for (``RADAS_VERBOSE=1``); an errored trial is one line (trial, config, last error line, where
the traceback is stored); no ANSI codes into pipes or files; none of Tune's messages that
contradict radas; a progress line at least every heartbeat while a trial runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray import tune

import radas
from radas.core.console import LiveLine, RelayedOutput, print_info
from radas.tune.progress import ProgressLine

pytestmark = pytest.mark.timing  # progress lines, heartbeats and output relayed while trials run

# A record in Ray's logging format, wherever it comes from (driver, job supervisor, worker)
RAY_RECORD = re.compile(r"\b(DEBUG|INFO|WARNING)\b \S+\.py:\d+ -- ")
RAY_NOISE = ("(raylet)", "Started a local Ray instance", "Running entrypoint for job")
CONTRADICTING = ("Tuner.restore", "Stop signal received", "Press CTRL+C", "Failed to fetch")

SCRIPT = textwrap.dedent(
    """
    import sys
    from ray import tune
    import radas

    def fine(config):
        print("TRAINABLE SAYS", config["i"], flush=True)
        return {"score": config["i"]}

    def broken(config):
        if config["i"] == 1:
            raise ValueError(f"i={config['i']} is broken")
        return {"score": config["i"]}

    for name, trainable in [("fine", fine), ("broken", broken)][: int(sys.argv[1])]:
        print("=== EXPERIMENT", name, flush=True)
        radas.run_experiment_sync(
            user_name="tester", experiment_name=name, trainable=trainable,
            param_space={"i": tune.grid_search([0, 1])}, run_choice="run",
        )
    print("=== END", flush=True)
    """
)


def run_script(project: Path, experiments: int, **env: str) -> str:
    """stdout and stderr of a fresh process (Ray started there, output through a pipe)."""
    (project / "sweeps.py").write_text(SCRIPT)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    environment.pop("NO_COLOR", None)
    if "RADAS_VERBOSE" not in env:
        environment.pop("RADAS_VERBOSE", None)
    completed = subprocess.run(
        [sys.executable, "sweeps.py", str(experiments)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout
    return completed.stdout


def ray_lines(output: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if RAY_RECORD.search(line) or any(noise in line for noise in RAY_NOISE)
    ]


def assert_one_error_line(output: str, message: str) -> str:
    """The one line of the errored trial (i=1): its id, config, error and an existing
    traceback file without ANSI codes; returns the trial id."""
    found = re.findall(
        rf"^\[radas\] \w+: trial (\w+) \(i=1\) errored: {message} "
        r"\(traceback in (\S+/error\.txt)\)$",
        output,
        flags=re.MULTILINE,
    )
    assert len(found) == 1, output
    trial_id, path = found[0]
    assert sum(trial_id in line for line in output.splitlines()) == 1, output
    traceback = Path(path).read_text()
    assert traceback.rstrip().endswith(message) and "\x1b" not in traceback, traceback
    assert "Traceback (most recent call last)" not in output, output
    return trial_id


@pytest.mark.slow  # 10-26 s: a fresh process starts Ray and runs two sweeps
def test_a_sweep_prints_radas_lines_the_trainables_prints_and_one_line_per_error(project):
    output = run_script(project, experiments=2)
    assert "\x1b" not in output, output
    assert ray_lines(output) == [], output
    fine, broken = output.split("=== EXPERIMENT broken")
    assert re.search(r"\[radas\] fine: FINISHED", fine), output
    for i in (0, 1):  # Ray's prefix names the worker the line came from
        assert re.search(rf"^\(fine pid=\d+\) TRAINABLE SAYS {i}$", output, re.MULTILINE), output
    assert_one_error_line(broken, "ValueError: i=1 is broken")
    unexpected = [
        line
        for line in output.splitlines()
        if not line.startswith(("[radas] ", "=== ", "(fine pid="))
    ]
    assert unexpected == [], output


@pytest.mark.slow  # a script starting its own Ray: 21 s under load
def test_radas_verbose_shows_rays_own_lines(project):
    output = run_script(project, experiments=1, RADAS_VERBOSE="1")
    assert ray_lines(output), output
    assert "[radas] fine: FINISHED" in output


def test_relayed_output_passes_whole_plain_lines_without_rays_records(monkeypatch):
    monkeypatch.delenv("RADAS_VERBOSE", raising=False)
    sink = io.StringIO()  # not a terminal
    relay = RelayedOutput(sink)
    for chunk in (
        "2026-11-29 12:08:13,565\tINFO job_manager.py:581 -- Runtime env is setting up.\nRun",
        "ning entrypoint for job radas-x-r1: python -u -m radas.backends.job_driver spec\n"
        "[radas] a",
        ": 1 of 2\n\x1b[36m(f pid=7)\x1b[0m hello\x1b[32m [repeated 2x]\x1b[0m\nlast",
    ):
        relay.write(chunk)
    assert sink.getvalue() == "[radas] a: 1 of 2\n(f pid=7) hello [repeated 2x]\n"
    relay.close()
    assert sink.getvalue().endswith("[repeated 2x]\nlast")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_live_line_is_rewritten_in_place_until_other_output(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("NO_COLOR", "1")
    line = LiveLine()
    line.show("a: 0 of 2")
    line.show("a: 1 of 2")
    print_info("a: done")
    line.show("a: 2 of 2")
    line.close()
    assert terminal.getvalue() == (
        "\r\x1b[2K[radas] a: 0 of 2\r\x1b[2K[radas] a: 1 of 2\n[radas] a: done\n"
        "\r\x1b[2K[radas] a: 2 of 2\n"
    )


def test_the_eta_shares_the_work_left_among_the_trials_that_run_at_once():
    line = ProgressLine("eta", metric="loss", mode="min")
    line.setup(total_num_samples=10)
    trials = [SimpleNamespace(trial_id=f"t{i}", status="RUNNING") for i in range(4)]
    line.on_step_end(0, trials)  # 4 run at once
    assert "left" not in line.describe(trials, now=time.monotonic())  # nothing ended yet
    trials[0].status = "TERMINATED"
    line.on_trial_result(0, trials, trials[0], {"loss": 0.5})
    line._durations = [600.0]  # it ran 10 minutes; the other three started 4 minutes ago
    line._start, line._started_at = 0.0, {f"t{i}": 0.0 for i in (1, 2, 3)}
    text = line.describe(trials, now=240.0)
    # 6 pending x 10 min + 3 running x 6 min left, shared by 4: 19.5 min
    assert text.startswith("eta: 1 of 10 trials finished, 3 running, 6 pending, 0 errored; ")
    assert text.endswith("; best loss=0.5; 0:04:00 elapsed, about 0:19:30 left")


@pytest.mark.slow
def test_the_progress_line_comes_every_heartbeat_while_a_trial_runs(tmp_path, capfd):
    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})

    def quiet_trial(config):
        time.sleep(3.5)
        return {"loss": 1.0}

    tune.Tuner(
        quiet_trial,
        run_config=tune.RunConfig(
            storage_path=str(tmp_path),
            name="beat",
            verbose=0,
            callbacks=[ProgressLine("beat", heartbeat_s=1.0, min_interval_s=1.0)],
        ),
    ).fit()
    lines = re.findall(
        r"^\[radas\] beat: 0 of 1 trials finished, 1 running, 0 pending, 0 errored; "
        r"\d:\d\d:\d\d elapsed$",
        capfd.readouterr().out,
        flags=re.MULTILINE,
    )
    assert len(lines) >= 2, lines


def stepping(config):
    (Path(config["marks"]) / f"step-{config['i']}").touch()
    for step in range(15):
        radas.report({"step": step})
        time.sleep(0.2)


@pytest.mark.slow
def test_interrupt_and_restore_show_none_of_tunes_contradicting_messages(
    project, capfd, monkeypatch
):
    """Not even when Ray's own lines are asked for (quiet, they are dropped with the rest)."""
    monkeypatch.setenv("RADAS_VERBOSE", "1")
    marks = project / "marks"
    marks.mkdir()
    kwargs = dict(
        user_name="tester",
        experiment_name="stop-restore",
        trainable=stepping,
        param_space={"i": tune.grid_search([0, 1, 2]), "marks": str(marks)},
    )

    def interrupt_when_running():  # Ctrl-C, as a user would: Tune's handler in the main thread
        deadline = time.monotonic() + 120
        while not list(marks.glob("step-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_running, daemon=True)
    interrupter.start()
    with contextlib.suppress(KeyboardInterrupt):  # how an interrupted local run ends
        radas.run_experiment_sync(run_choice="run", **kwargs)
    interrupter.join(timeout=10)
    restored = radas.run_experiment_sync(run_choice="restore", **kwargs)
    assert set(restored["df"]["status"]) == {"TERMINATED"}
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert "resuming from" in output, output
    for text in CONTRADICTING:
        assert text not in output, output


@pytest.mark.cluster
@pytest.mark.slow
def test_a_cluster_runs_streamed_output_is_plain_with_one_line_per_error(cluster, project, capfd):
    def broken(config):
        if config["i"] == 1:
            raise ValueError(f"i={config['i']} is broken")
        return {"score": config["i"]}

    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="plain",
        trainable=broken,
        param_space={"i": tune.grid_search([0, 1])},
        run_with="cluster:testcluster",
        run_choice="run",
    )
    assert results["outcome"].errored_trials == 1
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert "\x1b" not in output, output
    assert ray_lines(output) == [], output
    assert_one_error_line(output, "ValueError: i=1 is broken")


def fails_once(config):
    """Its first run fails after one report: out of memory (i=0), or its worker is killed (i=1).
    Run again, it continues from its state, and says so on stderr: in the worker's log after
    Ray's "Restored on <ip> from checkpoint" line, so the test knows that line came by."""
    if radas.load_state() is not None:
        print(f"trial i={config['i']} continues", file=sys.stderr, flush=True)
        return
    radas.report({"step": 1}, state={"step": 1})
    failed = Path(config["marks"]) / f"failed-{config['i']}"
    if failed.exists():
        return
    failed.touch()
    if config["i"] == 0:
        raise MemoryError("failed once")
    # the trial's worker process is killed, as by a lost machine: Ray's ActorDiedError (an
    # os._exit of the trainable's own is its error: tests/integrity/test_lost_trials.py)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="doubling cpu_per_trial needs 2 CPUs")
def test_a_trial_radas_runs_again_is_not_announced_as_an_error(project, capfd):
    marks = project / "marks"
    marks.mkdir()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="runs-again",
        trainable=fails_once,
        param_space={"i": tune.grid_search([0, 1]), "marks": str(marks)},
        run_choice="run",
        cpu_per_trial=1,
    )
    assert set(results["df"]["status"]) == {"TERMINATED"}
    output = ""
    deadline = time.monotonic() + 60
    while output.count(" continues") < 2 and time.monotonic() < deadline:
        captured = capfd.readouterr()
        output += captured.out + captured.err
        time.sleep(0.1)
    assert re.search(r"^\(fails_once pid=\d+\) trial i=0 continues$", output, re.MULTILINE)
    assert "from checkpoint" not in output, output  # Ray's "Restored on <ip> from checkpoint"
    assert "warning" not in output and "errored:" not in output, output
    assert "unavailable" not in output and "died" not in output, output
    traceback = r"\((?:details|traceback) in (\S+/error\.txt)\)$"
    memory = re.findall(
        r"^\[radas\] runs-again: trial \w+ \(i=0\) ran out of memory \(MemoryError: failed "
        r"once\); radas runs it again with cpu_per_trial=2 \(more memory each, fewer per "
        rf"node\) once the running trials have ended {traceback}",
        output,
        flags=re.MULTILINE,
    )
    lost = re.findall(  # run again within the fit, at once (radas.tune.retries)
        r"^\[radas\] runs-again: trial \w+ \(i=1\) lost its node or worker \(not an error of "
        r"the trainable\); it runs again from its latest saved state as soon as a node has "
        r"room \(details in (\S+/error\.txt)\)$",
        output,
        flags=re.MULTILINE,
    )
    assert len(memory) == 1 and len(lost) == 1, output
    assert "MemoryError: failed once" in Path(memory[0]).read_text()
    # the memory retry's own line follows (the lost trial ran again within the fit)
    assert "1 trial(s) ran out of memory with cpu_per_trial=1" in output, output
    assert "trial(s) lost their node or worker" not in output, output


SIMILAR_LINES_SCRIPT = textwrap.dedent(
    """
    import time
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch
    import radas

    def trainable(config):
        print(f"starting at epoch {config['epoch']}", flush=True)
        time.sleep(0.5)
        return {"score": config["epoch"]}

    radas.run_experiment_sync(
        user_name="tester", experiment_name="similar", trainable=trainable,
        param_space={"epoch": tune.grid_search([3, 5, 7])}, run_choice="run",
    )
    radas.run_experiment_sync(
        user_name="tester", experiment_name="optuna", trainable=trainable,
        param_space={"epoch": tune.randint(0, 100)}, run_choice="run",
        tuner_init_kwargs={"tune_config": tune.TuneConfig(
            search_alg=OptunaSearch(), metric="score", mode="max", num_samples=2)},
    )
    print("=== END", flush=True)
    """
)


@pytest.mark.slow  # a fresh process starts Ray and runs two sweeps: ~20 s
def test_lines_that_differ_only_in_numbers_all_reach_the_console_and_optuna_stays_quiet(
    project,
):
    """Ray's deduplicator would print "starting at epoch 3 [repeated 3x across cluster]" and
    lose 5 and 7 for good (issue 23); Optuna's INFO records are not radas's or the trial's."""
    (project / "sweeps.py").write_text(SIMILAR_LINES_SCRIPT)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("RADAS_VERBOSE", None)
    completed = subprocess.run(
        [sys.executable, "sweeps.py"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    output = completed.stdout
    assert completed.returncode == 0, output
    for epoch in (3, 5, 7):
        assert re.search(rf"^\(trainable pid=\d+\) starting at epoch {epoch}$", output, re.M), (
            output
        )
    assert "repeated" not in output, output
    assert "A new study created" not in output and "[I " not in output, output


@pytest.mark.slow  # a local sweep in this process: ~8 s
def test_each_trials_output_is_kept_in_its_folder_and_radas_logs_prints_it(project, capsys):
    from radas import cli

    def talkative(config):
        print(f"stdout of {config['i']}", flush=True)
        print(f"stderr of {config['i']}", file=sys.stderr, flush=True)
        return {"score": config["i"]}

    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="talk",
        trainable=talkative,
        param_space={"i": tune.grid_search([1, 2])},
        run_choice="run",
    )
    df = results["tuner"].get_dataframe()
    output = results["tuner"].get_trial_output()
    assert sorted(output) == sorted(df["trial_id"])
    for trial_id, i in zip(df["trial_id"], df["config/i"], strict=True):
        assert output[trial_id] == f"stdout of {i}\nstderr of {i}\n"
    first = df["trial_id"].iloc[0]
    assert results["tuner"].get_trial_output(first) == {first: output[first]}
    with pytest.raises(radas.errors.InvalidArgumentError, match="No trial 'nope'"):
        results["tuner"].get_trial_output("nope")

    capsys.readouterr()
    assert cli.main(["logs", "--experiment", "talk", "--user", "tester"]) == 0
    printed = capsys.readouterr().out
    for trial_id, i in zip(df["trial_id"], df["config/i"], strict=True):
        assert f"=== trial {trial_id}\nstdout of {i}\nstderr of {i}\n" in printed, printed
    assert cli.main(["logs", "--user", "tester"]) == 1  # neither a job nor an experiment
