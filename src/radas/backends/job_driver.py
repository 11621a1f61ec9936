"""The entrypoint of a radas Ray Job: ``python -m radas.backends.job_driver <spec key>``.

Checks that this machine sees the cluster's path roots as the client does (the client's
markers, ``backends._shared_roots``), takes the experiment the client pickled out of the
cluster's memory (``submission.take_over_spec``), runs it with ``sweep.run_sweep`` and writes the
outcome next to the results for the client. A stop request arrives as SIGINT (see
``backends.ray_jobs``): Tune saves the experiment's state and returns, so ``restore`` works.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

from radas.core.console import print_error, print_info, ray_output_wanted
from radas.core.spec import SweepSpec
from radas.errors import ClusterError
from radas.storage import files, store


def load_spec(key: str) -> SweepSpec:
    from ray import cloudpickle

    from radas.backends.submission import take_over_spec

    return cloudpickle.loads(take_over_spec(key))


def main(argv: list[str]) -> int:
    import ray

    from radas.backends import shared_roots
    from radas.backends.ray_jobs import OUTCOME_FILE
    from radas.core.secrets import HAND_OVER_ENV, forget_trainables, take_over
    from radas.ray_compat.versions import CLIENT_RAY_VERSION_ENV, check_pair
    from radas.tune.sweep import run_sweep

    # The client checked the head's Ray before submitting, but a runtime_env (pip, a container
    # image) can run this driver on another Ray, which would unpickle the experiment wrongly.
    problem = check_pair(
        os.environ.get(CLIENT_RAY_VERSION_ENV, "unknown"),
        ray.__version__,
        os.environ.get("RADAS_CLUSTER", "?"),
    )
    if problem:
        print_error(
            f"Cannot load the experiment on the cluster: its driver runs Ray {ray.__version__} "
            f"(is ray in the job's runtime_env?). {problem}"
        )
        return 1
    unseen = shared_roots.unseen_roots()
    if unseen:  # before anything runs: the client reads the results from those folders
        print_error(shared_roots.unseen_line(unseen))
        return 1
    # Ray's connection records only when asked for (RADAS_VERBOSE, passed on by the client)
    ray.init(logging_level=logging.INFO if ray_output_wanted() else logging.ERROR)
    try:
        spec = load_spec(argv[1])
    except ClusterError as err:
        print_error(str(err))
        return 1
    except (ModuleNotFoundError, AttributeError) as err:
        print_error(
            f"Cannot load the experiment on the cluster: {err}. The trainable (or something it "
            "uses) comes from a module the cluster cannot import. Put that module in the "
            "directory you run from (it is shipped as the job's working_dir), or ship it with "
            "runtime_env={'py_modules': [...]} or install it with runtime_env={'pip': [...]}."
        )
        return 1
    try:  # read from the cluster's memory and deleted there: this driver alone holds them
        spec.secrets = take_over(os.environ.get(HAND_OVER_ENV))
    except ClusterError as err:
        print_error(str(err))
        return 1
    print_info(
        f"{spec.experiment_name}: running on the cluster (run_choice={spec.run_choice!r}), "
        f"results at {spec.experiment_path}"
    )
    try:
        outcome = run_sweep(spec)
    finally:
        forget_trainables()
    record = {"job_id": os.environ.get("RADAS_JOB_ID"), **dataclasses.asdict(outcome)}
    files.write_atomic(store.location(outcome.experiment_path) / OUTCOME_FILE, json.dumps(record))
    if outcome.interrupted:
        print_info(
            f"{spec.experiment_name}: stopped with {outcome.finished_trials} of "
            f"{outcome.total_trials} trials finished; state saved for run_choice='restore'"
        )
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's and Ray's teardown (seconds): the trials' actors are gone, the
    # results and the outcome are on disk, and the job server only needs the exit code.
    os._exit(code)
