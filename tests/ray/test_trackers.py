"""wandb and SwanLab from trainables (radas.rwandb, radas.rswanlab) and prepare_secrets.

The sweeps are real local Ray sweeps with the real trackers in their offline modes
(WANDB_MODE=offline, swanlab mode="offline"); the runs are read back from the files the
trackers wrote (their record logs use LevelDB's log format, parsed below with the trackers'
own protobuf messages). No network is used.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest
from ray import tune

import radas
import radas.rswanlab as rs
import radas.rwandb as rw
from radas.errors import TrackerConfigError, TrackerNotInstalledError
from radas.trackers import logged_config, prepare_secrets
from radas.trackers.base import default_init_kwargs, read_block, sanitize_project

FAKE_WANDB_KEY = "radas-test-wandb-key-0123456789abcdef01234567"
FAKE_SWANLAB_KEY = "radas-test-swanlab-key-9876543210"
TRACKER_HOME = Path(os.environ["RADAS_HOME"]) / "tracker-home"  # removed with RADAS_HOME


def tracker_env() -> dict[str, str]:
    """Offline trackers whose caches and settings stay inside the test's RADAS_HOME. The
    same dict for every sweep here, so the local Ray is started once for all of them."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(TRACKER_HOME / "wandb-config"),
        "WANDB_CACHE_DIR": str(TRACKER_HOME / "wandb-cache"),
        "WANDB_DATA_DIR": str(TRACKER_HOME / "wandb-data"),
        "SWANLAB_ROOT": str(TRACKER_HOME / "swanlab-root"),
        "SWANLAB_MODE": "offline",
    }


# -- the trainables ------------------------------------------------------------------


def wandb_trainable(config):
    run = rw.rwandb_init(config)
    for step in range(1, 4):
        rw.rwandb_log({"score": config["x"] * step})
        radas.report(
            {
                "score": config["x"] * step,
                "key_seen": os.environ.get("WANDB_API_KEY") == FAKE_WANDB_KEY,
                "run_started": run is not None,
            }
        )
    rw.rwandb_finish()


def swanlab_trainable(config):
    run = rs.rswanlab_init(config)
    for step in range(1, 4):
        rs.rswanlab_log({"score": config["x"] * step})
        radas.report(
            {
                "score": config["x"] * step,
                "key_seen": os.environ.get("SWANLAB_API_KEY") == FAKE_SWANLAB_KEY,
                "run_started": run is not None,
            }
        )
    rs.rswanlab_finish()


def disabled_trainable(config):
    run = rw.rwandb_init(config)
    rw.rwandb_log({"score": 1})
    rw.rwandb_finish()
    return {"score": config["x"], "run_started": run is not None}


# -- reading the trackers' files -----------------------------------------------------


def leveldb_records(path: Path) -> list[bytes]:
    """The records of a wandb (.wandb) or swanlab (.swanlab) log: a 7-byte file header, then
    LevelDB log records (crc32, length, type; FULL/FIRST/MIDDLE/LAST) in 32 KiB blocks."""
    data = path.read_bytes()
    block, header = 32768, 7
    records, pending, position = [], b"", header
    while position + header <= len(data):
        left = block - position % block
        if left < header:
            position += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + header])
        if length == 0 and kind == 0:  # zero padding up to the end of the block
            position += left
            continue
        chunk = data[position + header : position + header + length]
        position += header + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
            pending = b""
    return records


def read_wandb_run(path: Path) -> dict:
    from wandb.proto import wandb_internal_pb2

    run: dict = {"history": [], "config": {}}
    for raw in leveldb_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(
                project=record.run.project,
                group=record.run.run_group,
                name=record.run.display_name,
                tags=list(record.run.tags),
                notes=record.run.notes,
            )
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            run["history"].append(row)
            continue
        else:
            continue
        for item in updates:
            key = item.key or "/".join(item.nested_key)
            if not key.startswith("_"):
                run["config"][key] = json.loads(item.value_json)
    return run


def read_swanlab_run(path: Path) -> dict:
    import yaml
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record

    run: dict = {"scalars": {}}
    for raw in leveldb_records(path):
        record = Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "start":
            run.update(
                project=record.start.project, group=record.start.group, name=record.start.name
            )
        elif kind == "scalar":
            run["scalars"].setdefault(record.scalar.key, []).append(
                (record.scalar.step, record.scalar.value.number)
            )
        elif kind == "finish":
            run["finished"] = True
    config = yaml.safe_load((path.parent / "files" / "config.yaml").read_text())
    run["config"] = {key: entry["value"] for key, entry in config.items()}
    return run


def files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(path)
    return found


def experiment_info(experiment_path: str) -> dict:
    return json.loads((Path(experiment_path) / "radas_experiment.json").read_text())


def expected_group(experiment_path: str) -> str:
    info = experiment_info(experiment_path)
    stamp = info["started"].replace("-", "").replace(":", "").replace("T", "-")
    return f"{info['experiment_name']}-{stamp}"


# -- real sweeps ---------------------------------------------------------------------


def run_sweep(trainable, experiment_name: str, param_space: dict) -> dict:
    # run_experiment takes the tracker key out of the param_space, into the trials' env.
    return radas.run_experiment_sync(
        user_name="tracker-tester",
        experiment_name=experiment_name,
        trainable=trainable,
        param_space=param_space,
        runtime_env={"env_vars": tracker_env()},
        run_choice="run",
    )


@pytest.mark.slow
def test_wandb_offline_one_run_per_trial_with_history_config_and_names(project):
    results = run_sweep(
        wandb_trainable,
        "trk-wandb",
        {
            "x": tune.grid_search([1, 2]),
            "wandb": {"enable": True, "api_key": FAKE_WANDB_KEY},
        },
    )
    df = results["df"]
    assert len(df) == 2 and set(df["status"]) == {"TERMINATED"}
    assert df["run_started"].all() and df["key_seen"].all()  # the key reached the workers
    assert not any("api_key" in column for column in df.columns)

    experiment = Path(results["experiment_path"])
    run_files = sorted(experiment.glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 2  # one offline run per trial, inside that trial's directory
    assert len({path.parents[2] for path in run_files}) == 2
    runs = [read_wandb_run(path) for path in run_files]
    group = expected_group(results["experiment_path"])
    by_x = {}
    for run in runs:
        assert run["project"] == "trk-wandb"
        assert run["group"] == group
        assert run["tags"] == ["tracker-tester"]
        assert results["full_name"] in run["notes"]
        assert run["config"] == {"x": run["config"]["x"]}  # no wandb block, no key
        by_x[run["config"]["x"]] = run
    assert set(by_x) == {1, 2}
    for x, run in by_x.items():
        assert [row["score"] for row in run["history"]] == [x * 1, x * 2, x * 3]
        assert [row["_step"] for row in run["history"]] == [0, 1, 2]
    assert {run["name"] for run in runs} == {f"wandb_trainable_{t}" for t in df["trial_id"]}

    # the key is in none of the experiment's files (params.json, state, history, wandb runs)
    assert files_containing(experiment, FAKE_WANDB_KEY) == []


@pytest.mark.slow
def test_swanlab_offline_one_run_per_trial_with_scalars_config_and_names(project):
    results = run_sweep(
        swanlab_trainable,
        "trk-swanlab",
        {
            "x": tune.grid_search([1, 2]),
            "swanlab": {"enable": True, "api_key": FAKE_SWANLAB_KEY},
        },
    )
    df = results["df"]
    assert len(df) == 2 and set(df["status"]) == {"TERMINATED"}
    assert df["run_started"].all() and df["key_seen"].all()

    experiment = Path(results["experiment_path"])
    run_files = sorted(experiment.glob("*/swanlog/run-*/run-*.swanlab"))
    assert len(run_files) == 2
    assert len({path.parents[2] for path in run_files}) == 2
    runs = [read_swanlab_run(path) for path in run_files]
    group = expected_group(results["experiment_path"])
    by_x = {}
    for run in runs:
        assert run["project"] == "trk-swanlab"
        assert run["group"] == group
        assert run["finished"]
        assert run["config"] == {"x": run["config"]["x"]}
        by_x[run["config"]["x"]] = run
    assert set(by_x) == {1, 2}
    for x, run in by_x.items():
        assert run["scalars"]["score"] == [(0, x * 1.0), (1, x * 2.0), (2, x * 3.0)]
    assert {run["name"] for run in runs} == {f"swanlab_trainable_{t}" for t in df["trial_id"]}
    assert files_containing(experiment, FAKE_SWANLAB_KEY) == []


@pytest.mark.slow
def test_disabled_tracker_is_a_no_op_in_a_sweep(project):
    results = run_sweep(
        disabled_trainable,
        "trk-off",
        {"x": tune.grid_search([1, 2]), "wandb": {"enable": False, "api_key": FAKE_WANDB_KEY}},
    )
    assert sorted(results["df"]["score"]) == [1, 2]
    assert not results["df"]["run_started"].any()
    assert list(Path(results["experiment_path"]).rglob("wandb")) == []


# -- in this process, without Ray ----------------------------------------------------


def test_disabled_or_absent_block_needs_no_tracker_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails
    monkeypatch.setitem(sys.modules, "swanlab", None)
    assert rw.rwandb_init({"lr": 0.1}) is None
    assert rw.rwandb_init({"wandb": {"enable": False}}) is None
    assert rs.rswanlab_init({"swanlab": False}) is None
    rw.rwandb_log({"loss": 1.0})
    rs.rswanlab_log({"loss": 1.0})
    rw.rwandb_finish()
    rs.rswanlab_finish()
    assert rw.rwandb_run() is None and rs.rswanlab_run() is None


@pytest.mark.parametrize("tracker", ["wandb", "swanlab"])
def test_enabled_but_not_installed_says_how_to_install(monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)
    init = rw.rwandb_init if tracker == "wandb" else rs.rswanlab_init
    with pytest.raises(TrackerNotInstalledError) as caught:
        init({tracker: {"enable": True}})
    assert isinstance(caught.value, ImportError)
    assert f'pip install "radas-ray[{tracker}]"' in str(caught.value)
    assert f'config["{tracker}"]["enable"] = False' in str(caught.value)


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"enabled": True}, "unknown key(s) ['enabled']"),
        ({"enable": "yes"}, "must be True or False"),
        ({"api_key": 123}, "non-empty string or None"),
        ({"init_kwargs": ["project"]}, "must be a dict of wandb.init arguments"),
        ("on", "must be a dict"),
    ],
)
def test_bad_blocks_say_what_is_wrong(block, words):
    with pytest.raises(TrackerConfigError) as caught:
        read_block({"wandb": block}, "wandb")
    assert words in str(caught.value)
    assert isinstance(caught.value, radas.InvalidArgumentError)


def test_block_defaults():
    assert read_block({}, "wandb").enable is False
    block = read_block({"wandb": {"api_key": " s3cr3t ", "init_kwargs": {"project": "p"}}}, "wandb")
    assert (block.enable, block.api_key, block.init_kwargs) == (True, "s3cr3t", {"project": "p"})
    assert "s3cr3t" not in repr(block)


def test_prepare_secrets_takes_the_keys_out_of_the_config_without_touching_the_input():
    space = {
        "lr": tune.grid_search([0.1, 0.2]),
        "wandb": {"enable": True, "api_key": "wk", "init_kwargs": {"project": "p"}},
        "swanlab": {"enable": True, "api_key": "sk"},
    }
    new_space, secrets = prepare_secrets(space, {"pip": ["x"], "env_vars": {"A": "1"}})
    assert new_space == {
        "lr": tune.grid_search([0.1, 0.2]),
        "wandb": {"enable": True, "init_kwargs": {"project": "p"}},
        "swanlab": {"enable": True},
    }
    assert secrets == {"WANDB_API_KEY": "wk", "SWANLAB_API_KEY": "sk"}
    assert space["wandb"]["api_key"] == "wk"  # the caller's dicts are unchanged
    # idempotent, and a space without keys has no secrets
    assert prepare_secrets(new_space, {}) == (new_space, {})
    assert prepare_secrets({"lr": 1, "wandb": {"api_key": None}}, None) == (
        {"lr": 1, "wandb": {}},
        {},
    )


def test_prepare_secrets_refuses_a_key_inside_a_search_space():
    space = {"wandb": tune.grid_search([{"enable": True, "api_key": "k"}, {"enable": False}])}
    with pytest.raises(TrackerConfigError, match="inside a search space"):
        prepare_secrets(space, {})
    with pytest.raises(TrackerConfigError, match="inside a search space"):
        prepare_secrets({"swanlab": tune.choice([{"api_key": "k"}])}, {})


def test_logged_config_drops_tracker_blocks_and_secrets():
    config = {
        "lr": 0.1,
        "wandb": {"enable": True},
        "swanlab": {"enable": False},
        "hf_token": "t",
        "db": {"password": "p", "host": "h", "nested": [{"api_key": "a", "n": 1}]},
        "max_tokens": 5,
    }
    assert logged_config(config) == {
        "lr": 0.1,
        "db": {"host": "h", "nested": [{"n": 1}]},
        "max_tokens": 5,
    }


def test_defaults_outside_a_trial_and_user_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    defaults = default_init_kwargs("wandb", {"lr": 0.1, "wandb": {"api_key": "k"}})
    assert defaults == {"project": "radas", "config": {"lr": 0.1}}
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    assert "project" not in default_init_kwargs("wandb", {})
    assert sanitize_project("a/b:c d") == "a_b_c_d"


def test_rwandb_in_this_process_offline(tmp_path, monkeypatch):
    for key, value in tracker_env().items():
        monkeypatch.setenv(key, value)
    config = {
        "lr": 0.5,
        "wandb": {
            "enable": True,
            "api_key": FAKE_WANDB_KEY,
            "init_kwargs": {"dir": str(tmp_path), "project": "mine", "group": "g"},
        },
    }
    first = rw.rwandb_init(config)
    assert rw.rwandb_run() is first
    rw.rwandb_log({"loss": 0.25})
    second = rw.rwandb_init(config)  # finishes the first run of this process
    rw.rwandb_log({"loss": 0.125})
    rw.rwandb_finish()
    assert rw.rwandb_run() is None
    assert first.id != second.id
    runs = {
        path.parent.name.rpartition("-")[2]: read_wandb_run(path)
        for path in tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    }
    assert set(runs) == {first.id, second.id}
    assert [row["loss"] for row in runs[first.id]["history"]] == [0.25]
    assert [row["loss"] for row in runs[second.id]["history"]] == [0.125]
    for run in runs.values():
        assert (run["project"], run["group"], run["config"]) == ("mine", "g", {"lr": 0.5})
    assert files_containing(tmp_path, FAKE_WANDB_KEY) == []


@pytest.mark.slow
@pytest.mark.cluster
def test_wandb_on_a_cluster_job_gets_the_key_and_writes_one_run_per_trial(cluster, project):
    results = radas.run_experiment_sync(
        user_name="tracker-tester",
        experiment_name="trk-cluster",
        trainable=wandb_trainable,
        param_space={
            "x": tune.grid_search([1, 2]),
            "wandb": {"enable": True, "api_key": FAKE_WANDB_KEY},
        },
        runtime_env={"env_vars": tracker_env()},
        run_with="cluster:testcluster",
        run_choice="run",
    )
    df = results["df"]
    assert set(df["status"]) == {"TERMINATED"} and df["key_seen"].all()
    experiment = Path(results["experiment_path"])
    runs = [read_wandb_run(p) for p in experiment.glob("*/wandb/offline-run-*/run-*.wandb")]
    assert sorted(run["config"]["x"] for run in runs) == [1, 2]
    assert {run["project"] for run in runs} == {"trk-cluster"}
    assert {run["group"] for run in runs} == {expected_group(results["experiment_path"])}
    assert files_containing(experiment, FAKE_WANDB_KEY) == []
