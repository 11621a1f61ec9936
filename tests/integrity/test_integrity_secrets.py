"""Issue 11 §4: secrets never land where they must not; secret-looking inputs are warned about.

A unique secret is planted as a wandb ``api_key`` (wandb runs for real, WANDB_MODE=offline)
and in the ``param_space["secrets"]`` block; a real sweep runs locally (in-process Ray) and as
a job on the ``cluster`` fixture (``ray start`` on 127.0.0.1). Each trial reports a hash of
what it found in ``os.environ`` (the secrets must arrive), then every file radas and Ray wrote
is searched for them: the experiment folder, RADAS_HOME, the Ray session / node temp dirs,
the job's runtime_env, metadata and output. Each place is one ``integrity("secret")`` case.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from ray import cloudpickle, tune

import radas
import radas.rwandb as rw
from radas.backends import get_backend
from radas.backends.ray_jobs import check_working_dir
from radas.core.secrets import with_secrets
from radas.core.spec import SweepSpec
from radas.errors import ExperimentNotFoundError, InvalidArgumentError, RadasWarning
from radas.trackers.secrets import prepare_secrets

HOME = Path(os.environ["RADAS_HOME"])
TRACKER_ENV = {  # offline wandb, its files inside RADAS_HOME (searched below)
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_CONFIG_DIR": str(HOME / "secrets-tracker" / "wandb-config"),
    "WANDB_CACHE_DIR": str(HOME / "secrets-tracker" / "wandb-cache"),
    "WANDB_DATA_DIR": str(HOME / "secrets-tracker" / "wandb-data"),
}


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secret_trainable(config):
    """Logs to wandb and reports hashes of the secrets it finds in its environment."""
    run = rw.rwandb_init(config)
    rw.rwandb_log({"x": config["x"]})
    rw.rwandb_finish()
    radas.report(
        {
            "x": config["x"],
            "run_started": run is not None,
            "wandb_key_hash": digest(os.environ.get("WANDB_API_KEY", "")),
            "db_password_hash": digest(os.environ.get("DB_PASSWORD", "")),
        }
    )


def files_containing(roots: list[Path], needles: list[str]) -> list[str]:
    """Every regular file under ``roots`` holding one of ``needles`` (as bytes)."""
    found = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:  # a file removed while we look (a live Ray session)
                continue
            found.extend(str(path) for needle in needles if needle.encode() in data)
    return found


@contextlib.contextmanager
def working_dir(path: Path):
    """cd into ``path`` for a module-scoped run (the ``project`` fixture is per test)."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class PlantedRun:
    """One sweep with planted secrets: what it returned, printed and where it ran."""

    def __init__(self, run_with: str, workdir: Path) -> None:
        self.wandb_key = f"sk-radas-test-{uuid.uuid4().hex}"
        self.db_password = f"pw-radas-test-{uuid.uuid4().hex}"
        self.secrets = [self.wandb_key, self.db_password]
        out = io.StringIO()
        with working_dir(workdir), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            self.results = radas.run_experiment_sync(
                user_name="secret-tester",
                experiment_name="planted",
                trainable=secret_trainable,
                param_space={
                    "x": tune.grid_search([1, 2]),
                    "wandb": {"enable": True, "api_key": self.wandb_key},
                    "secrets": {"DB_PASSWORD": self.db_password},
                },
                runtime_env={"env_vars": TRACKER_ENV, "excludes": [".env"]},
                run_with=run_with,
                run_choice="run",
            )
        self.output = out.getvalue()
        self.df = self.results["df"]
        self.experiment = Path(self.results["experiment_path"])

    def assert_secrets_arrived(self) -> None:
        df = self.df
        assert list(df["status"]) == ["TERMINATED", "TERMINATED"] and df["run_started"].all()
        assert set(df["wandb_key_hash"]) == {digest(self.wandb_key)}
        assert set(df["db_password_hash"]) == {digest(self.db_password)}
        # and the config the trials saw (stored by Tune) has neither
        assert "config/secrets/DB_PASSWORD" not in df.columns
        assert not [c for c in df.columns if c.startswith("config/wandb/api_key")]


# --- locally -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    run = PlantedRun("local", tmp_path_factory.mktemp("secrets-local"))
    import ray

    run.ray_session = Path(ray._private.worker._global_node.get_session_dir_path())
    return run


@pytest.mark.slow
@pytest.mark.integrity("secret")
@pytest.mark.parametrize(
    "place", ["experiment folder", "RADAS_HOME", "Ray session dir", "output and DataFrames"]
)
def test_local_run_keeps_planted_secrets_out(local_run, place):
    local_run.assert_secrets_arrived()
    if place == "output and DataFrames":
        tuner = local_run.results["tuner"]
        texts = [
            local_run.output,
            local_run.df.to_csv(),
            tuner.get_history_dataframe().to_csv(),
            tuner.get_dataframe().to_csv(),
        ]
        assert not [s for s in local_run.secrets for text in texts if s in text]
        return
    roots = {
        "experiment folder": [local_run.experiment],
        "RADAS_HOME": [HOME],
        # logs (runtime_env_agent.log held the wandb key before), runtime resources, sockets
        "Ray session dir": [local_run.ray_session],
    }[place]
    assert files_containing(roots, local_run.secrets) == []


# --- on a cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("secrets-cluster")
    # a secret-looking file, excluded with runtime_env excludes: it must not reach the cluster
    env_file_secret = f"env-radas-test-{uuid.uuid4().hex}"
    (workdir / ".env").write_text(f"API_TOKEN={env_file_secret}\n")
    run = PlantedRun("cluster:testcluster", workdir)
    run.secrets.append(env_file_secret)
    backend = get_backend("cluster:testcluster")
    run.job = backend.experiment_jobs("secret-tester", run.results["full_name"])[-1]
    run.job_info = backend.client.get_job_info(run.job.job_id)
    run.job_logs = backend.logs(run.job.job_id)
    return run


def node_temp_dirs(cluster) -> list[Path]:
    """The --temp-dir of each of the cluster's nodes (private to radas's local clusters)."""
    from radas.clusters.node_processes import node_temp_dir

    head = Path(node_temp_dir(cluster.name, "head"))
    prefix = head.name.removesuffix("head")
    return sorted(head.parent.glob(f"{prefix}*"))


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.integrity("secret")
@pytest.mark.parametrize(
    "place",
    [
        "experiment folder",
        "cluster state dir",
        "node temp dirs",
        "job runtime_env and metadata",
        "job output",
        "client output and DataFrames",
        "cluster memory after the job",
    ],
)
def test_cluster_job_keeps_planted_secrets_out(cluster, cluster_run, place):
    cluster_run.assert_secrets_arrived()
    secrets = cluster_run.secrets
    info = cluster_run.job_info
    if place == "experiment folder":
        assert files_containing([cluster_run.experiment], secrets) == []
    elif place == "cluster state dir":  # results root, head.log, state.json, token
        assert files_containing([cluster.state_dir], secrets) == []
    elif place == "node temp dirs":  # session logs, runtime_resources (working_dir, spec)
        dirs = node_temp_dirs(cluster)
        assert dirs and files_containing(dirs, secrets) == []
    elif place == "job runtime_env and metadata":
        text = repr((info.runtime_env, info.metadata, info.entrypoint, info.message))
        assert [s for s in secrets if s in text] == []
        # only the key of the hand-over rides along, and nothing that looks like a secret
        env_vars = info.runtime_env["env_vars"]
        assert env_vars["RADAS_SECRETS_KEY"].startswith("gcs://radas_secrets_")
        assert "WANDB_API_KEY" not in env_vars and "DB_PASSWORD" not in env_vars
    elif place == "job output":
        assert [s for s in secrets if s in cluster_run.job_logs] == []
    elif place == "client output and DataFrames":
        texts = [cluster_run.output, cluster_run.df.to_csv()]
        assert not [s for s in secrets for text in texts if s in text]
    else:  # the cluster's memory (GCS key-value store) holds neither them nor the hand-over
        key = info.runtime_env["env_vars"]["RADAS_SECRETS_KEY"]
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | cluster.env
        done = subprocess.run(
            [sys.executable, "-c", GCS_PROBE, cluster.gcs_address, key, *secrets],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stdout.strip().splitlines()[-1:] == ["hand-over absent, 0 hits"], (
            done.stdout[-2000:] + done.stderr[-2000:]
        )


# Connects to a cluster as a driver; prints whether the hand-over key is still stored and which
# stored values (in the namespaces Ray and Tune use) hold one of the secrets.
GCS_PROBE = """
import sys
import ray
from ray.experimental import internal_kv as kv

address, key, *secrets = sys.argv[1:]
ray.init(address=address, logging_level="ERROR")
hits = []
for namespace in (None, b"fun", b"job", b"session", b"cluster", b"dashboard"):
    for name in kv._internal_kv_list(b"", namespace=namespace):
        value = kv._internal_kv_get(name, namespace=namespace) or b""
        hits += [f"{namespace}:{name}" for s in secrets if s.encode() in value]
for hit in hits:
    print(hit)
state = "present" if kv._internal_kv_exists(key) else "absent"
print(f"hand-over {state}, {len(hits)} hits")
"""


# --- the hand-over itself ------------------------------------------------------------------


@pytest.mark.integrity("secret")
def test_a_pickled_spec_never_holds_the_secrets():
    planted = f"sk-radas-test-{uuid.uuid4().hex}"
    spec = SweepSpec(
        user_name="u",
        experiment_name="e",
        full_name="f",
        storage_root="/tmp",
        trainable=secret_trainable,
        param_space={"x": 1},
        run_choice="run",
        secrets={"DB_PASSWORD": planted},
    )
    pickled = cloudpickle.dumps(spec)
    assert planted.encode() not in pickled and planted not in repr(spec)
    assert cloudpickle.loads(pickled).secrets == {} and spec.secrets == {"DB_PASSWORD": planted}


class EnvTrainable(tune.Trainable):
    def setup(self, config):
        self.seen = os.environ.get("DB_PASSWORD")

    def step(self):
        return {"seen": self.seen, "done": True}


def test_with_secrets_sets_the_environment_for_the_trial_only(monkeypatch):
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "the-users-own")

    def trainable(config, extra=None):
        return os.environ.get("DB_PASSWORD"), os.environ.get("WANDB_API_KEY")

    wrapped = with_secrets(trainable, {"DB_PASSWORD": "pw", "WANDB_API_KEY": "k"})
    assert (wrapped.__name__, wrapped({})) == ("trainable", ("pw", "k"))
    assert "DB_PASSWORD" not in os.environ and os.environ["WANDB_API_KEY"] == "the-users-own"
    assert with_secrets(trainable, {}) is trainable
    # a Trainable class keeps its name; the secrets are there from setup to cleanup
    wrapped_class = with_secrets(EnvTrainable, {"DB_PASSWORD": "pw"})
    assert wrapped_class.__name__ == "EnvTrainable" and issubclass(wrapped_class, EnvTrainable)
    trial = wrapped_class(config={})
    assert trial.train()["seen"] == "pw" and os.environ["DB_PASSWORD"] == "pw"
    trial.stop()
    assert "DB_PASSWORD" not in os.environ


# --- secret-looking inputs: warned about before anything is stored -------------------------


@pytest.mark.integrity("error")
@pytest.mark.parametrize(
    ("param_space", "runtime_env", "named"),
    [
        ({"lr": 0.1, "db": {"password": "hunter2"}}, None, "db.password"),
        ({"hf_token": tune.grid_search(["t1", "t2"])}, None, "hf_token"),
        ({"auth": tune.choice([{"api_key": "k1"}, {"api_key": "k2"}])}, None, "auth[0].api_key"),
        ({"lr": 0.1}, {"env_vars": {"HF_TOKEN": "t", "MODE": "x"}}, "HF_TOKEN"),
    ],
    ids=["nested-password", "token-search-space", "api-key-in-choice", "runtime-env-var"],
)
def test_secret_looking_config_is_warned_about_before_anything_is_stored(
    project, param_space, runtime_env, named
):
    # run_choice='restore' of an experiment never run fails after the check, before Ray starts
    warned = pytest.warns(RadasWarning, match=r"secret-looking")
    with warned as caught, pytest.raises(ExperimentNotFoundError):
        radas.run_experiment_sync(
            user_name="secret-warned",
            experiment_name="warned",
            trainable=secret_trainable,
            param_space=param_space,
            runtime_env=runtime_env,
            run_choice="restore",
        )
    message = str(caught[0].message)
    assert named in message and 'param_space["secrets"]' in message
    assert "os.environ['NAME']" in message
    stored = HOME / "ray-results" / "secret-warned"
    assert [p for p in stored.rglob("*") if p.is_file()] == []  # nothing stored


def test_lookalike_keys_are_no_secrets():
    space = {"max_tokens": 512, "use_token": True, "tokenizer": "bpe", "num_secrets": 3}
    space |= {"password_file": "/run/pw", "secret_santa": None, "token": None}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare_secrets(space, {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}) == (
            space,
            {},
        )


@pytest.mark.integrity("error")
@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"1BAD": "x"}, "not an environment variable name"),
        ({"DB_PASSWORD": 5}, "must be a non-empty string"),
        ({"DB_PASSWORD": ""}, "must be a non-empty string"),
        (tune.grid_search([{"A": "x"}]), "no search spaces"),
        ("DB_PASSWORD=x", "must be a plain dict"),
    ],
)
def test_bad_secrets_block_says_what_is_wrong(block, words):
    with pytest.raises(InvalidArgumentError, match=words):
        prepare_secrets({"secrets": block})


@pytest.mark.integrity("error")
def test_a_tracker_key_given_twice_differently_is_refused():
    space = {"wandb": {"api_key": "one"}, "secrets": {"WANDB_API_KEY": "two"}}
    with pytest.raises(InvalidArgumentError, match="give the key in one place only"):
        prepare_secrets(space)
    same = {"wandb": {"api_key": "one"}, "secrets": {"WANDB_API_KEY": "one"}}
    assert prepare_secrets(same) == ({"wandb": {}}, {"WANDB_API_KEY": "one"})


# --- the working directory shipped to a cluster --------------------------------------------


@pytest.mark.integrity("error")
def test_secret_looking_files_in_the_working_dir_are_named_with_how_to_exclude(tmp_path):
    files = {
        "train.py": "print('hi')\n",
        ".env": "TOKEN=x\n",
        ".env.example": "TOKEN=\n",  # a template, not a secret
        "hf.token": "x\n",
        "keys/id_rsa": "x\n",
        "keys/id_rsa.pub": "ssh-rsa AAA\n",  # a public key
        "certs/server.pem": "x\n",  # .gitignored
        "conf/credentials": "x\n",  # excluded with runtime_env excludes
        ".netrc": "machine x\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / ".gitignore").write_text("certs/\n")
    with pytest.warns(RadasWarning, match="secret-looking file") as caught:
        size = check_working_dir(tmp_path, ["conf/credentials"], cluster_name="dev")
    message = str(caught[0].message)
    listed = message.split("cluster 'dev': ")[1].split(". ")[0]
    assert listed == ".env, .netrc, hf.token, keys/id_rsa"
    assert "runtime_env={'excludes': ['.env', '.netrc', 'hf.token', 'keys/id_rsa']}" in message
    assert ".gitignore" in message
    assert size == sum(
        len(files[n]) for n in files if n not in ("certs/server.pem", "conf/credentials")
    ) + len("certs/\n")
    # nothing secret-looking left: no warning
    for name in (".env", "hf.token", "keys/id_rsa", ".netrc"):
        (tmp_path / name).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_working_dir(tmp_path, ["conf/credentials"], cluster_name="dev")


# --- files radas writes follow the user's umask --------------------------------------------

UMASK_RUN = """
import radas, radas.cloud_artifact as rda
from ray import tune

def trainable(config):
    rda.init(user_name="private")
    rda.save_cloud_artifact(f"w{config['x']}.json", {"x": config["x"]})
    radas.report({"score": config["x"]})

radas.run_experiment_sync(
    user_name="private", experiment_name="umask", trainable=trainable,
    param_space={"x": tune.grid_search([1, 2])}, run_choice="run",
)
"""


@pytest.mark.slow
def test_with_umask_077_nothing_radas_writes_is_readable_by_others(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RADAS_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", UMASK_RUN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o077),  # what the README tells users to do
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = [p for p in home.rglob("*") if not p.is_symlink()]
    kinds = {p.relative_to(home).parts[0] for p in written}
    assert {"ray-results", "artifacts"} <= kinds and len(written) > 10
    readable = [f"{p} {p.stat().st_mode & 0o777:o}" for p in written if p.stat().st_mode & 0o077]
    assert readable == []
