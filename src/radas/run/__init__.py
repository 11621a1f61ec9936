"""``run_experiment`` in stages, each a module, data flowing one way:

- ``plan``: every argument checked, the backend looked up, one ``SweepSpec`` built;
- ``execute``: the run choice resolved and the backend run (or a restore with nothing left);
- ``load``: the stored experiment read back as a ``radas.Tuner`` in an ``ExperimentResult``;
- ``analyze``: the DataFrame and the figure (``radas.results.analysis``).

``radas.experiment`` strings them together; a backend never plots, the analysis never talks
to a cluster.
"""
