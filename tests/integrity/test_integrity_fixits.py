"""Issue 23: inputs and faults that ended in a raw error, a silent surprise or a state with no
way out, each with a real run (in-process Ray) or real storage."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import radas
from radas.errors import InvalidArgumentError, StorageError
from support.fault_tools import tmpfs
from support.trainables import add, grid_ab


def first_name(config):
    if config["a"] == 2 and os.path.exists(config["fail_while"]):
        raise RuntimeError("fails until the file is gone")
    return {"score": config["a"]}


def second_name(config):
    return {"score": config["a"]}


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_restore_with_the_trainable_renamed_says_so_and_how_to_restore(project):
    from ray import tune

    (project / "fail").touch()
    kwargs = dict(
        user_name="alice",
        experiment_name="renamed",
        param_space={"a": tune.grid_search([1, 2]), "fail_while": str(project / "fail")},
        dos=["run"],
    )
    ran = radas.run_experiment_sync(trainable=first_name, run_choice="run", **kwargs)
    assert ran["outcome"].errored_trials == 1  # something for a restore to do
    with pytest.raises(InvalidArgumentError) as caught:
        radas.run_experiment_sync(trainable=second_name, run_choice="restore", **kwargs)
    message = str(caught.value)
    assert "restore needs the trainable the experiment was started with" in message
    assert "named 'first_name'; this one is named 'second_name'" in message
    assert "Rename it back to 'first_name'" in message and "run_choice='run'" in message
    # the way out it names works
    (project / "fail").unlink()
    restored = radas.run_experiment_sync(trainable=first_name, run_choice="restore", **kwargs)
    assert restored["outcome"].finished_trials == 2


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_radas_analyze_of_an_experiment_uri_reads_it_from_the_store(project, capsys, monkeypatch):
    import pyarrow.fs as pafs

    from radas import cli
    from support.moto_s3 import moto_s3_server

    ran = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="to-s3",
        trainable=add,
        param_space=grid_ab(),
        run_choice="run",
        dos=["run"],
    )
    with moto_s3_server() as s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)  # no cluster names this store
        uri = s3.url(f"results/alice/{ran['full_name']}")
        pafs.copy_files(
            ran["experiment_path"],
            uri.removeprefix("s3://"),
            destination_filesystem=pafs.S3FileSystem(endpoint_override=s3.endpoint_url),
        )
        figure = project / "f.png"
        argv = ["analyze", uri, "--plot", "barplot", "--x", "config/a", "--y", "score"]
        assert cli.main([*argv, "-o", str(figure), "--csv", "out.csv"]) == 0
    out = capsys.readouterr().out
    assert f"(6 rows; stored at {uri})" in out
    assert figure.stat().st_size > 1000
    assert sorted(pd.read_csv(project / "out.csv")["score"]) == [11, 12, 13, 21, 22, 23]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An S3 endpoint on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in [*held, listener]:
            connection.close()


@pytest.mark.integrity("error")
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("call", ["save", "exists", "load"])
def test_artifacts_on_a_black_holed_s3_endpoint_end_with_a_clear_error(
    black_hole, monkeypatch, call
):
    from radas import cloud_artifact as rda
    from radas.storage import object_artifacts

    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(name, value)
    # the bounds made short for the test (the defaults: 2 tries of 10 s)
    monkeypatch.setattr(object_artifacts, "S3_READ_TIMEOUT_S", 1)
    monkeypatch.setattr(object_artifacts, "S3_CONNECT_TIMEOUT_S", 1)
    rda.init(user_name="alice", root="s3://lab/artifacts", endpoint_url=black_hole)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        if call == "save":
            rda.save_cloud_artifact("w.txt", "weights")
        elif call == "exists":
            rda.artifact_exists("w.txt")
        else:
            rda.load_cloud_artifact("w.txt")
    seconds = time.monotonic() - started
    assert f"{black_hole} did not answer (2 tries of 1 s" in str(caught.value)
    assert seconds < 30, seconds  # within its bounds (it hung for good on uploads before)


@pytest.mark.integrity("survive")
def test_a_later_analysis_never_replaces_an_earlier_figure_silently(tmp_path):
    import seaborn as sns

    from radas.errors import RadasWarning
    from radas.results import analysis

    df = pd.DataFrame({"x": [1, 2, 3], "y": [1, 4, 9]})

    def options(**more):
        return analysis.AnalysisOptions(
            plot_fn=sns.lineplot, plot_kwargs=dict(x="x", y="y"), plot_format="png", **more
        )

    default = tmp_path / "figures" / "alice" / "_home_alice_lr"
    first = analysis.plot(df, options(), default).path
    first_bytes = Path(first).read_bytes()
    second = analysis.plot(df.assign(y=df["y"] * 2), options(), default).path
    third = analysis.plot(df, options(), default).path
    assert [Path(p).name for p in (first, second, third)] == [
        "_home_alice_lr.png",
        "_home_alice_lr-2.png",
        "_home_alice_lr-3.png",
    ]
    assert Path(first).read_bytes() == first_bytes  # the earlier figure is kept as it was
    # a path the user names is theirs: written, with a warning naming it
    mine = tmp_path / "mine.png"
    analysis.plot(df, options(plot_path=mine), default)
    with pytest.warns(RadasWarning, match=f"plot_path {mine} existed: the earlier figure"):
        analysis.plot(df, options(plot_path=mine), default)


def saves_each_epoch(config):
    state = radas.load_state() or {"epoch": 0}
    started_at = state["epoch"] + 1
    for epoch in range(started_at, 4):
        if epoch == 3 and os.path.exists(config["fail_while"]):
            raise RuntimeError("fails until the file is gone")
        radas.report({"epoch": epoch, "started_at": started_at}, state={"epoch": epoch})


@pytest.mark.integrity("survive")
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["corrupt state", "all states deleted"])
def test_a_damaged_or_deleted_saved_state_has_a_way_out(project, damage):
    """The trial's latest state damaged: its error names the file and the way out (delete
    that folder); a deleted latest state: the trial continues from the previous one, or
    from scratch when none is kept. Was: ERROR on every restore, advice 'fix the trainable'."""
    from ray import tune

    from radas.errors import RadasWarning

    (project / "fail").touch()
    kwargs = dict(
        user_name="alice",
        experiment_name="damaged-state",
        trainable=saves_each_epoch,
        param_space={"i": tune.grid_search([0]), "fail_while": str(project / "fail")},
    )
    first = radas.run_experiment_sync(run_choice="run", **kwargs)
    assert first["outcome"].errored_trials == 1  # unfinished, states of epochs 1 and 2 saved
    (project / "fail").unlink()
    [trial_dir] = Path(first["experiment_path"]).glob("saves_each_epoch_*")
    latest, previous = trial_dir / "checkpoint_000001", trial_dir / "checkpoint_000000"
    if damage == "corrupt state":
        (latest / "radas_state.pkl").write_bytes(b"garbage")
        again = radas.run_experiment_sync(run_choice="restore", **kwargs)
        [error] = again["df"]["error"]
        assert f"the state it saved, {latest}/radas_state.pkl, is damaged" in error
        assert f"delete that state's folder ({latest}) and restore again" in error
        shutil.rmtree(latest)  # the way out it names
        says, started_at = "it continues from the newest complete one (checkpoint_000000)", 2
    else:
        shutil.rmtree(latest)
        shutil.rmtree(previous)
        says, started_at = "it restarts from scratch (load_state() returns None)", 1
    with pytest.warns(RadasWarning, match=re.escape(f"saved state {latest} is missing")) as said:
        restored = radas.run_experiment_sync(run_choice="restore", **kwargs)
    assert says in str(said[0].message)
    assert restored["outcome"].finished_trials == 1
    assert restored["df"][["epoch", "started_at"]].values.tolist() == [[3, started_at]]
    # Tune's count continues from the state the trial continued from: epoch n is iteration n
    history = restored["tuner"].get_history_dataframe()
    assert history[["training_iteration", "epoch"]].values.tolist() == [[1, 1], [2, 2], [3, 3]]


# --- read-only results and a full disk: a clear error, nothing moved, nothing half-copied ----


def remount(mount_point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


def one_errored(project: Path, name: str) -> dict[str, Any]:
    """Arguments of a 2-trial experiment whose trial a=2 errors while ``project/fail`` exists."""
    from ray import tune

    (project / "fail").touch()
    return dict(
        user_name="alice",
        experiment_name=name,
        trainable=first_name,
        param_space={"a": tune.grid_search([1, 2]), "fail_while": str(project / "fail")},
        dos=["run"],
    )


def tree(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_a_read_only_results_root_is_read_and_refuses_runs_clearly(project, monkeypatch):
    from radas.errors import RadasWarning

    with tmpfs(project / "home") as home:
        monkeypatch.setenv("RADAS_HOME", str(home))
        kwargs = one_errored(project, "read-only")
        path = Path(radas.run_experiment_sync(run_choice="run", **kwargs)["experiment_path"])
        (project / "fail").unlink()
        before = tree(home)
        remount(home, "ro")
        with pytest.warns(RadasWarning, match=f"{path} is read-only here"):
            grid = radas.Tuner(path).get_results()
        assert [result.metrics.get("score") for result in grid].count(1) == 1
        assert len(grid) == 2 and grid.num_errors == 1
        assert sorted(radas.Tuner(path).get_dataframe()["status"]) == ["ERROR", "TERMINATED"]
        for choice in ("restore", "run"):
            with pytest.raises(StorageError) as caught:
                radas.run_experiment_sync(run_choice=choice, **kwargs)
            message = str(caught.value)
            assert f"the results root {home}/ray-results/alice is not writable here" in message
            assert "dos=['analyze']" in message
        remount(home, "rw")
        assert tree(home) == before  # nothing written, moved or copied


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_run_over_a_folder_that_cannot_be_moved_copies_nothing(project, radas_home):
    """The experiment's folder is a read-only mount: moving it to .archive/ was a copy that
    failed half-way, leaving a partial copy at every try."""
    kwargs = one_errored(project, "unmovable")
    path = Path(radas.run_experiment_sync(run_choice="run", **kwargs)["experiment_path"])
    saved = project / "saved"
    shutil.move(path, saved)
    with tmpfs(path):
        shutil.copytree(saved, path, dirs_exist_ok=True)
        remount(path, "ro")
        archive = radas_home / "ray-results" / "alice" / ".archive" / path.name
        for _ in range(2):
            with pytest.raises(StorageError, match="nothing was moved or changed") as caught:
                radas.run_experiment_sync(run_choice="run", **kwargs)
            assert f"moves the earlier results at {path}" in str(caught.value)
            assert not archive.exists() or not any(archive.iterdir())
        assert tree(path) == tree(saved)


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_run_over_results_on_a_full_disk_moves_nothing_and_restore_still_works(
    project, monkeypatch
):
    from radas.tune.sweep import MIN_FREE_TO_RUN_BYTES

    with tmpfs(project / "home", "120m") as home:
        monkeypatch.setenv("RADAS_HOME", str(home))
        kwargs = one_errored(project, "full-disk")
        path = Path(radas.run_experiment_sync(run_choice="run", **kwargs)["experiment_path"])
        (project / "fail").unlink()
        free = shutil.disk_usage(home).free
        (home / "filler").write_bytes(b"\0" * (free - MIN_FREE_TO_RUN_BYTES // 2))
        before = tree(path)
        with pytest.raises(radas.errors.StorageFullError) as caught:
            radas.run_experiment_sync(run_choice="run", **kwargs)
        message = str(caught.value)
        assert f"the earlier results at {path} were not moved" in message
        assert "run_choice='restore'" in message
        assert tree(path) == before and not (path.parent / ".archive").exists()
        # the advice holds: restore finds them and continues the errored trial
        restored = radas.run_experiment_sync(run_choice="restore", **kwargs)
        assert restored["outcome"].finished_trials == 2


@pytest.mark.integrity("survive")
@pytest.mark.slow
def test_two_clusters_on_one_s3_uri_read_each_from_its_own_server(project, monkeypatch):
    """Clusters a and b keep results under one s3:// URI on different servers: analyzing b's
    experiment reads b's server (it read a's, the entry listed last: 'no results stored')."""
    import pyarrow.fs as pafs

    from support.moto_s3 import moto_s3_server

    def closed_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    ran = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="two-servers",
        trainable=add,
        param_space=grid_ab(),
        run_choice="run",
        dos=["run"],
    )
    config = project / "config.toml"
    monkeypatch.setenv("RADAS_CONFIG", str(config))
    with moto_s3_server() as s3:
        root = s3.url("shared-results")
        pafs.copy_files(
            ran["experiment_path"],
            f"{root}/alice/{ran['full_name']}".removeprefix("s3://"),
            destination_filesystem=pafs.S3FileSystem(endpoint_override=s3.endpoint_url),
        )
        nowhere = f"http://127.0.0.1:{closed_port()}"
        config.write_text(
            "".join(
                f'[clusters.{name}]\naddress = "{nowhere}"\nresults_root = "{root}"\n'
                f'results_endpoint_url = "{endpoint}"\n'
                for name, endpoint in (("b", s3.endpoint_url), ("a", nowhere))
            )
        )
        analyzed = radas.run_experiment_sync(
            user_name="alice", experiment_name="two-servers", run_with="cluster:b", dos=["analyze"]
        )
        assert sorted(analyzed["df"]["score"]) == [11, 12, 13, 21, 22, 23]
        # the Tuner handed back keeps reading b's server
        assert len(analyzed["tuner"].get_history_dataframe()) == 6
        with pytest.raises(StorageError, match="does not say which server holds it"):
            radas.Tuner(analyzed["experiment_path"])
