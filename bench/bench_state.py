"""What saving a trial's state every epoch costs: ``radas.report(metrics, state=...)`` with a
10 MB state vs ``radas.report(metrics)``, per epoch, side by side in one run.

Both variants run one local trial of ``--epochs`` epochs, each epoch ``--epoch-ms`` of
simulated work (a sleep) and one report; the state is a numpy array of ``--mb`` MB with one
value changed per epoch (made once, before timing). The time per epoch is measured inside the
trial, from before its first epoch to after its last report; the sweep's start-up is not
counted. Also prints how many states stay on disk per trial (radas keeps the latest 2).

    python bench/bench_state.py                    # 100 epochs of 50 ms, 10 MB state
    python bench/bench_state.py --epoch-ms 0       # the bare cost of one report
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def trainable(config):
    import numpy as np

    import radas

    size = max(2 * config["epochs"], config["mb"] * 2**20 // 8)  # --mb 0: a tiny state
    state = {"weights": np.ones(size)} if config["save"] else None
    started = time.perf_counter()
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config["epoch_ms"] / 1000)
        metrics = {"epoch": epoch, "elapsed_s": time.perf_counter() - started}
        if state is None:
            radas.report(metrics)
        else:
            state["weights"][epoch] = epoch
            radas.report(metrics, state=state)
    radas.report({"epoch": config["epochs"], "elapsed_s": time.perf_counter() - started})


def run_variant(save: bool, args: argparse.Namespace) -> dict:
    import radas

    name = f"state-{'saved' if save else 'none'}"
    results = radas.run_experiment_sync(
        user_name="bench",
        experiment_name=name,
        trainable=trainable,
        param_space={"save": save, "mb": args.mb, "epochs": args.epochs, "epoch_ms": args.ms},
        run_choice="run",
    )
    elapsed = float(results["df"]["elapsed_s"].iloc[0])
    trial_dir = Path(results["experiment_path"])
    kept = len(list(trial_dir.glob("*/checkpoint_*")))
    return {"ms_per_epoch": 1000 * elapsed / args.epochs, "states_kept": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--epoch-ms", dest="ms", type=float, default=50.0)
    parser.add_argument("--mb", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radas-bench-state-") as home:
        os.environ["RADAS_HOME"] = home
        os.chdir(home)
        from radas.backends.local import ensure_local_ray

        ensure_local_ray({})  # started before timing
        run_variant(False, args)  # warm-up: the first trial of a process starts slower
        plain = run_variant(False, args)
        saved = run_variant(True, args)
    extra = saved["ms_per_epoch"] - plain["ms_per_epoch"]
    print(
        f"\n{args.epochs} epochs of {args.ms:g} ms work, one report each (one trial, local):\n"
        f"  no state             {plain['ms_per_epoch']:8.1f} ms/epoch\n"
        f"  {args.mb} MB state each epoch {saved['ms_per_epoch']:8.1f} ms/epoch   "
        f"(+{extra:.1f} ms/epoch, ratio {saved['ms_per_epoch'] / plain['ms_per_epoch']:.2f}x; "
        f"{saved['states_kept']} states kept on disk)"
    )


if __name__ == "__main__":
    main()
