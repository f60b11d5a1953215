"""`train.stack`: networks that differ only in their activation train together, and every one
of them ends as it would have trained alone: the same child run, metrics and status."""

import pytest
from mlflow.tracking import MlflowClient

from flows.compare import compare_activations
from tasks.core.cells import group_label, stack_groups
from tasks.core.config import Cell, load_config
from tests.flows.conftest import PARAMS, small_overrides


def test_cells_that_differ_only_in_their_activation_share_a_group():
    cells = [
        Cell(model="tutorial", activation="softmax", seed=0),
        Cell(model="tutorial", activation="relu", seed=0),
        Cell(model="mlp", activation="relu", seed=0),
        Cell(model="mlp", activation="tanh", seed=0),
        Cell(model="mlp", activation="relu", seed=1),
        Cell(model="mlp", activation="relu", seed=0, learning_rate=0.3),
        Cell(model="mlp", activation="tanh", seed=0, depth=2),
    ]
    groups = stack_groups(cells)
    assert [[c.name for c in g] for g in groups] == [
        ["tutorial/softmax/seed=0", "tutorial/relu/seed=0"],
        ["mlp/relu/seed=0", "mlp/tanh/seed=0"],
        ["mlp/relu/seed=1"],
        ["mlp/relu/lr=0.3/seed=0"],
        ["mlp/tanh/depth=2/seed=0"],
    ]
    assert group_label(groups[1]) == "mlp/{relu,tanh}/seed=0"
    assert group_label(groups[2]) == "mlp/relu/seed=1"


def _children(cfg) -> dict[str, dict]:
    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    out = {}
    for run in client.search_runs([experiment.experiment_id]):
        if "mlflow.parentRunId" not in run.data.tags:
            continue
        costs = [m.value for m in client.get_metric_history(run.info.run_id, "cost")]
        vals = [m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        out[run.info.run_name] = {
            "status": run.data.tags["status"],
            "run status": run.info.status,
            "costs": sorted(costs),  # one per epoch; NaN compares by its text below
            "val": vals,
            "test_accuracy": run.data.metrics.get("test_accuracy"),
            "dead": run.data.metrics.get("layer1.dead_fraction"),
        }
    return {name: {k: repr(v) for k, v in child.items()} for name, child in out.items()}


@pytest.mark.slow  # two whole flows
def test_a_stacked_grid_logs_exactly_what_one_network_at_a_time_logs(tmp_path, idx_folder):
    overrides = [
        *small_overrides(tmp_path, idx_folder),
        "sweep.activations=[softmax,relu,tanh]",
        "sweep.seeds=[0]",
    ]
    stacked = load_config(PARAMS, [*overrides, f"tracking.uri=sqlite:///{tmp_path / 's.db'}"])
    alone = load_config(
        PARAMS, [*overrides, f"tracking.uri=sqlite:///{tmp_path / 'a.db'}", "train.stack=false"]
    )
    compare_activations(stacked)
    compare_activations(alone)

    got, expected = _children(stacked), _children(alone)
    assert set(got) == {
        "tutorial/softmax/seed=0",
        "tutorial/relu/seed=0",
        "tutorial/tanh/seed=0",
        "mlp/relu/seed=0",
        "mlp/tanh/seed=0",
    }
    assert got == expected  # every status, cost, validation and test figure, bit for bit
    assert {child["run status"] for child in got.values()} == {"'FINISHED'"}
