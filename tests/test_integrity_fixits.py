"""Issue 23: inputs and faults that ended in a raw error, a silent surprise or a state with no
way out, each with a real run (in-process Ray) or real storage."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import radas
from conftest import add, grid_ab
from radas.errors import InvalidArgumentError


def first_name(config):
    if config["a"] == 2 and os.path.exists(config["fail_while"]):
        raise RuntimeError("fails until the file is gone")
    return {"score": config["a"]}


def second_name(config):
    return {"score": config["a"]}


@pytest.mark.integrity("error")
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

    from moto_s3 import moto_s3_server
    from radas import cli

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
