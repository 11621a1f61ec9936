"""radas analyze: re-plot a stored experiment to a file, nothing re-run."""

from __future__ import annotations

import argparse
import os

from radas.cli.common import Commands, listing_hint
from radas.cli.common import add_command as add_command_parser
from radas.views.experiment_args import add_experiment_arguments, user_of

PLOTS = (
    "lineplot",
    "scatterplot",
    "barplot",
    "boxplot",
    "pointplot",
    "heatmap",
    "relplot",
    "catplot",
    "displot",
)


def add_command(commands: Commands) -> None:
    analyze = add_command_parser(
        commands, "analyze", "re-plot a stored experiment to a file (nothing is re-run)"
    )
    add_experiment_arguments(analyze, stored="the URI of a stored experiment")
    analyze.add_argument(
        "--history", action="store_true", help="one row per report, not one per trial"
    )
    analyze.add_argument(
        "--plot",
        choices=PLOTS,
        default="lineplot",
        metavar="PLOT",
        help=f"the seaborn plot: {', '.join(PLOTS)} (default: lineplot)",
    )
    columns = {
        "x": "the column on the x axis (e.g. config/lr)",
        "y": "the column on the y axis (e.g. loss)",
        "hue": "the column that colours the lines or points",
        "col": "the column that splits the figure into panels",
        "style": "the column that sets the line or marker style",
    }
    for option, what in columns.items():
        analyze.add_argument(f"--{option}", metavar="COLUMN", help=what)
    analyze.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the figure's file: .png, .pdf or .svg (default: a file in radas's figures folder)",
    )
    analyze.add_argument("--csv", metavar="FILE", help="also write the DataFrame to this CSV file")
    analyze.set_defaults(handler=_analyze)


def _analyze(args: argparse.Namespace) -> None:
    import seaborn as sns

    from radas.core.args import output_file, run_directory
    from radas.experiment import analyze_stored_sync, run_experiment_sync
    from radas.storage.store import is_uri

    user, _ = user_of(args)
    plot_kwargs = {key: getattr(args, key) for key in ("x", "y", "hue", "col", "style")}
    plot_kwargs = {key: value for key, value in plot_kwargs.items() if value is not None}
    # -o and --csv are relative to where the command runs, not to --dir
    output = os.path.abspath(args.output) if args.output else None
    csv = output_file(args.csv, flag="--csv", example="results.csv") if args.csv else None
    analysis_options = dict(
        tuner_to_df_fn=(lambda tuner: tuner.get_history_dataframe()) if args.history else None,
        plot_fn=getattr(sns, args.plot) if plot_kwargs else None,
        plot_kwargs=plot_kwargs,
        plot_path=output,
        plot_format=None if output else ("png" if plot_kwargs else None),
    )
    if is_uri(args.experiment):  # a stored experiment's URI: read from there, no name
        result = analyze_stored_sync(args.experiment, user_name=user, **analysis_options)
    else:
        os.chdir(run_directory(args.dir))
        with listing_hint(args.run_with, user):
            result = run_experiment_sync(
                user_name=user,
                experiment_name=args.experiment,
                run_with=args.run_with,
                dos=["analyze"],
                **analysis_options,
            )
    df = result.df
    assert df is not None  # the analysis made it
    print(df.head(20).to_string())
    partial = "partial: the experiment is still running; " if result.partial else ""
    print(f"({len(df)} rows; {partial}stored at {result.experiment_path})")
    if csv:
        df.to_csv(csv, index=False)
        print(f"DataFrame written to {csv}")
    if result.fig_path:
        print(f"figure: {result.fig_path}")
