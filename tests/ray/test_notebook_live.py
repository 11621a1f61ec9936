"""``live=`` in a notebook: one display output updated in place while trials run, the final
figure into it at the end and no second copy below it. A real kernel (ipykernel, driven by
nbclient) runs a notebook the test makes; nbclient keeps only each display's last content, so
the test records the kernel's messages as they come.

The trials hold until the notebook's plot function has drawn twice (it leaves a file the
trials wait for): what is checked never depends on the machine's speed.
"""

from __future__ import annotations

import textwrap

import nbformat
import pytest
from nbclient import NotebookClient

SETUP = textwrap.dedent(
    """
    %matplotlib inline
    import pathlib
    import seaborn as sns
    from ray import tune
    import radas

    DRAWN_TWICE = pathlib.Path("drawn-twice").absolute()
    calls = []

    def counting_lineplot(*, data, ax, **kwargs):
        # each live refresh draws once; after the second the trials may end
        calls.append(len(data))
        if len(calls) == 2:
            DRAWN_TWICE.touch()
        return sns.lineplot(data=data, ax=ax, **kwargs)

    def reports_until_released(config):
        import os, time
        import radas

        step = 0
        while not os.path.exists(config["release"]):
            step += 1
            radas.report({"loss": 1.0 / step + config["i"], "step": step})
            time.sleep(0.2)
        radas.report({"loss": float(config["i"]), "step": step + 1})
    """
)
RUN = textwrap.dedent(
    """
    results = await radas.run_experiment(
        user_name="alice",
        experiment_name="live-notebook",
        trainable=reports_until_released,
        param_space={"i": tune.grid_search([0, 1]), "release": str(DRAWN_TWICE)},
        cpu_per_trial=0.5,
        run_choice="run",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        plot_fn=counting_lineplot,
        plot_kwargs=dict(x="step", y="loss", hue="config/i"),
        live=0.5,
    )
    """
)
CHECK = 'print("plot_fn calls:", len(calls), "figure:", results["fig"] is not None)'


class RecordingClient(NotebookClient):
    """nbclient, keeping every display message of the kernel: (cell, type, display id, data)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.displays: list[tuple[int, str, str | None, dict]] = []

    def process_message(self, msg, cell, cell_index):
        kind = msg["msg_type"]
        if kind in ("display_data", "update_display_data", "execute_result"):
            transient = msg["content"].get("transient") or {}
            self.displays.append(
                (cell_index, kind, transient.get("display_id"), msg["content"]["data"])
            )
        return super().process_message(msg, cell, cell_index)


@pytest.mark.slow
@pytest.mark.timing
def test_a_notebooks_live_figure_is_one_display_updated_in_place(project):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in (SETUP, RUN, CHECK)]
    client = RecordingClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(project)}},
    )
    client.execute()

    images = [d for d in client.displays if d[0] == 1 and "image/png" in d[3]]
    first, *updates = images
    assert first[1] == "display_data" and first[2] is not None  # one output with a display id
    assert [kind for _, kind, _, _ in updates] == ["update_display_data"] * len(updates)
    assert {display_id for _, _, display_id, _ in updates} == {first[2]}
    assert len(updates) >= 2  # a live refresh (the second drawing), then the final figure
    assert len({d[3]["image/png"] for d in images}) >= 2  # it went through distinct images
    # in the notebook: that one figure, holding the final image; no second copy below it
    shown = [o for o in notebook.cells[1].outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 1 and shown[0]["data"]["image/png"] == updates[-1][3]["image/png"]
    check = "".join(o.get("text", "") for o in notebook.cells[2].outputs)
    calls = int(check.split("plot_fn calls:")[1].split()[0])
    assert calls >= 3 and check.rstrip().endswith("figure: True")  # 2+ live, and the final
