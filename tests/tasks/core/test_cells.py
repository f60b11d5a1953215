"""tasks/core/cells.py: what identifies a grid cell, its key, its label, choosing cells by name."""

import pytest

from tasks.core.cells import (
    CELL_PARAMS,
    cell_fields,
    cell_key,
    cell_label,
    cell_labels,
    match_keys,
    select_cells,
    varying_axes,
)
from tasks.core.config import Config, validate_config


def _params(model="mlp", activation="relu", seed="0", lr="0.1", layers="[784, 128, 10]"):
    """A child run's params as MLflow returns them: strings."""
    return {
        "model": model,
        "activation": activation,
        "seed": seed,
        "learning_rate": lr,
        "layer_sizes": layers,
        "epochs": "10",  # not part of the identity
    }


def test_the_key_holds_every_swept_axis_parsed_so_spelling_does_not_split_a_cell():
    assert CELL_PARAMS == ("model", "activation", "seed", "learning_rate", "layer_sizes")
    assert cell_key(_params()) == ("mlp", "relu", 0, 0.1, (784, 128, 10))
    assert cell_key(_params(lr="0.10", layers="[784,128,10]")) == cell_key(_params())
    assert cell_key(_params(lr="0.05")) != cell_key(_params())  # a learning rate is a cell
    assert cell_key(_params(layers="[784, 64, 64, 10]")) != cell_key(_params())  # so is depth
    assert cell_key({**_params(), "epochs": "3"}) == cell_key(_params())


def test_fields_fall_back_to_tags_and_mark_what_was_never_recorded():
    fields = cell_fields({}, {"model": "tutorial", "activation": "softmax", "seed": "2"})
    assert fields == {
        "model": "tutorial",
        "activation": "softmax",
        "seed": 2,
        "learning_rate": None,
        "layer_sizes": None,
    }


def test_labels_show_an_axis_only_where_it_tells_two_cells_apart():
    default_grid = [
        cell_key(_params(model="tutorial", activation="softmax", layers="[784, 10]")),
        cell_key(_params()),
    ]
    # the models' layer sizes differ, but the model already tells those runs apart
    assert varying_axes(default_grid) == ()
    assert list(cell_labels(default_grid).values()) == [
        "tutorial/softmax/seed=0",
        "mlp/relu/seed=0",
    ]

    two_rates = [cell_key(_params(lr="0.1")), cell_key(_params(lr="0.05"))]
    assert varying_axes(two_rates) == ("learning_rate",)
    assert list(cell_labels(two_rates).values()) == [
        "mlp/relu/seed=0 lr=0.1",
        "mlp/relu/seed=0 lr=0.05",
    ]
    depths = [cell_key(_params()), cell_key(_params(layers="[784, 128, 128, 10]"))]
    assert cell_label(depths[1], varying_axes(depths)) == "mlp/relu/seed=0 layers=784-128-128-10"


def test_a_label_is_the_child_run_name_when_nothing_else_varies():
    cfg = Config()
    for cell in cfg.grid:
        fields = {"model": cell.model, "activation": cell.activation, "seed": cell.seed}
        assert cell_label(fields) == cell.name


def test_select_cells_keeps_the_named_cells_in_grid_order():
    grid = validate_config({"sweep": {"activations": ["softmax", "relu", "tanh"]}}).grid
    assert len(grid) == 5  # softmax only as the tutorial's output

    chosen = select_cells(grid, ["mlp/tanh/seed=0", "tutorial/relu/seed=0"])

    assert [c.name for c in chosen] == ["tutorial/relu/seed=0", "mlp/tanh/seed=0"]
    assert select_cells(grid, None) == grid


def test_select_cells_names_a_cell_the_grid_lacks_and_lists_what_it_has():
    grid = validate_config({"sweep": {"activations": ["softmax"]}}).grid
    with pytest.raises(ValueError) as err:
        select_cells(grid, ["mlp/softmax/seed=0"])
    assert str(err.value) == (
        "cells 'mlp/softmax/seed=0': not in this config's grid; its cells are "
        "tutorial/softmax/seed=0"
    )
    with pytest.raises(ValueError, match="name at least one cell"):
        select_cells(grid, [])


def test_cells_match_on_the_axes_either_grid_sweeps():
    rate_01, rate_02 = cell_key(_params(lr="0.1")), cell_key(_params(lr="0.2"))
    tanh = cell_key(_params(activation="tanh"))
    # both grids sweep the rate: each cell finds its own rate, whatever the order
    assert match_keys([rate_01, rate_02, tanh], [tanh, rate_02, rate_01]) == {
        rate_01: rate_01,
        rate_02: rate_02,
        tanh: tanh,
    }
    # one rate on each side (the config changed): the same cell, trained otherwise
    assert match_keys([rate_01], [rate_02]) == {rate_01: rate_02}
    # the original swept two rates, the re-run trained one: the other was not re-run
    assert match_keys([rate_01, rate_02], [rate_02]) == {rate_01: None, rate_02: rate_02}
    assert match_keys([tanh], [rate_01]) == {tanh: None}
