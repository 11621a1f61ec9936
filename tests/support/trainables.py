"""Trainables several test modules share. radas ships a trainable from a project file by
value (``radas.tune.configuration.ship_trainable_by_value``), so workers need not import this
module."""

from __future__ import annotations


def add(config):
    return {"score": config["a"] + config["b"]}


def grid_ab():
    from ray import tune

    return {"a": tune.grid_search([1, 2, 3]), "b": tune.grid_search([10, 20])}
