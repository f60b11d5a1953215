"""A grid where networks diverge at different epochs still completes and ranks them: per model,
`ok` runs first (best test accuracy first), then `degenerate`, then `diverged`."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.compare import compare_activations
from tasks.core.config import load_config
from tasks.core.names import STATUSES as STATUS_ORDER
from tests.flows.conftest import PARAMS, small_overrides


@pytest.mark.slow  # the whole flow, 14 networks
def test_runs_diverging_at_different_epochs_complete_and_rank_last(tmp_path, idx_folder):
    # Plain SGD at rate 1 without decay: the tutorial's ReLU meets log(0) in epoch 0; the mlp
    # with the identity as activation (a deep linear net) grows its weights until its cost
    # overflows a few epochs later; the rest train.
    overrides = small_overrides(tmp_path, idx_folder) + [
        "train.epochs=6",
        "train.learning_rate=1.0",
        "train.lr_decay=0",
        "sweep.activations=[softmax, sigmoid, relu, linear]",
        "sweep.seeds=[0, 1]",
        "models.mlp.hidden_units=[16]",
    ]
    cfg = load_config(PARAMS, overrides)

    report = compare_activations(cfg)

    table = pd.read_csv(f"{report}/results.csv")
    assert len(table) == len(cfg.grid) == 14
    diverged = table[table["status"] == "diverged"]
    epochs = set(diverged["diverged_epoch"].astype(int))
    assert len(epochs) >= 2 and 0 in epochs, diverged  # diverging at different epochs
    assert {"relu"} <= set(diverged[diverged["model"] == "tutorial"]["activation"])
    assert "linear" in set(diverged[diverged["model"] == "mlp"]["activation"])
    # a diverged run stopped at its epoch: one cost per epoch run, up to and including it
    assert (diverged["epochs_run"] == diverged["diverged_epoch"] + 1).all()

    for model, rows in table.groupby("model", sort=False):
        ranks = [STATUS_ORDER.index(s) for s in rows["status"]]
        assert ranks == sorted(ranks), (model, list(rows["status"]))
        ok = rows[rows["status"] == "ok"]["test_accuracy"].tolist()
        assert ok == sorted(ok, reverse=True), (model, ok)
        assert rows.iloc[0]["status"] == "ok", model  # each model has a sound winner
    assert list(dict.fromkeys(table["model"])) == ["tutorial", "mlp"]

    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 15  # parent + 14
    for run in runs:
        if run.data.tags.get("status") == "diverged":
            history = client.get_metric_history(run.info.run_id, "cost")
            assert len(history) == int(run.data.tags["diverged_epoch"]) + 1
