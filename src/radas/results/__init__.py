"""Reading a stored experiment: Tune's state (``tune_state``), the history, radas's trial
records, ``Tuner``, listing and the analysis into a DataFrame and figure."""
