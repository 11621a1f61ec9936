"""How does the learning rate affect the learning speed of a small NN on two moons?

Run from this directory:  python -u run.py
Writes learning_curves.png and epochs_to_target.png here and prints the summary table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from ray import tune
from trainable import train_two_moons

import radas

LEARNING_RATES = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
SEEDS = [0, 1, 2]
EPOCHS = 60
TARGET_ACCURACY = 0.9
USER = radas.get_current_user_name()


def epochs_to_target(history: pd.DataFrame, target: float = TARGET_ACCURACY) -> pd.DataFrame:
    """Per trial: the first epoch whose validation accuracy reaches ``target`` (NaN: never)."""
    reached = history[history["accuracy"] >= target].groupby("trial_id")["epoch"].min()
    trials = history.groupby("trial_id").agg(
        lr=("config/lr", "first"),
        seed=("config/seed", "first"),
        final_accuracy=("accuracy", "last"),
    )
    trials["epochs_to_target"] = reached.reindex(trials.index)
    return trials.reset_index()


def summarize(per_trial: pd.DataFrame) -> pd.DataFrame:
    return (
        per_trial.groupby("lr")
        .agg(
            epochs_to_target=("epochs_to_target", "mean"),
            seeds_reaching_target=("epochs_to_target", "count"),
            final_accuracy=("final_accuracy", "mean"),
        )
        .reset_index()
    )


def main() -> None:
    experiment = dict(user_name=USER, experiment_name="two-moons-lr", trainable=train_two_moons)

    # 1. Run the sweep and draw the learning curves (one row per reported epoch).
    curves = radas.run_experiment_sync(
        **experiment,
        param_space={
            "lr": tune.grid_search(LEARNING_RATES),
            "seed": tune.grid_search(SEEDS),
            "epochs": EPOCHS,
        },
        run_choice="run",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        rename_mapping={"config/lr": "learning rate"},
        plot_fn=sns.lineplot,
        plot_kwargs=dict(
            x="epoch",
            y="loss",
            hue="learning rate",
            hue_norm=matplotlib_log_norm(),
            palette="viridis",
            errorbar=("pi", 100),
            legend="full",
        ),
        process_g_fn=lambda ax: ax.set(yscale="log", title="Training loss (band: 3 seeds)"),
        plot_path="learning_curves.png",
    )

    # 2. Re-analyze the stored results (nothing re-runs): epochs to reach the target.
    summary = radas.run_experiment_sync(
        **experiment,
        dos=["analyze"],
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        process_df_fn=epochs_to_target,
        plot_fn=sns.pointplot,
        plot_kwargs=dict(
            x="lr",
            y="epochs_to_target",
            errorbar=("pi", 100),
            native_scale=True,
            log_scale=(True, False),
        ),
        process_g_fn=lambda ax: ax.set(
            xlabel="learning rate",
            ylabel=f"epochs to {TARGET_ACCURACY:.0%} val. accuracy",
            title=f"Learning speed (missing: not reached in {EPOCHS} epochs)",
        ),
        plot_path="epochs_to_target.png",
    )

    table = summarize(summary["df"])
    print(f"\nEpochs to reach {TARGET_ACCURACY:.0%} validation accuracy ({len(SEEDS)} seeds):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    fastest = table.loc[table["epochs_to_target"].idxmin()]
    print(
        f"\nAnswer: learning speed rises with the learning rate up to lr={fastest['lr']:g} "
        f"({fastest['epochs_to_target']:.0f} epochs); rates at or below "
        f"{table[table['seeds_reaching_target'] == 0]['lr'].max():g} do not reach the target "
        f"within {EPOCHS} epochs."
    )
    print(f"Figures: {curves['fig_path']}, {summary['fig_path']}")


def matplotlib_log_norm():
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=min(LEARNING_RATES), vmax=max(LEARNING_RATES))


if __name__ == "__main__":
    np.seterr(over="ignore")
    main()
