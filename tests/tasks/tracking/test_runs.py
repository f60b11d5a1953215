"""parent_run on the way out: no child run of an interrupted or failed flow stays RUNNING."""

import signal

import pytest
from mlflow.tracking import MlflowClient
from prefect.exceptions import TerminationSignal

from tasks.core.config import Cell, load_config
from tasks.tracking import runs as tracking


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (KeyboardInterrupt(), "KILLED"),
        (TerminationSignal(signal.SIGTERM), "KILLED"),  # SIGTERM inside a Prefect flow
        (RuntimeError("boom"), "FAILED"),
    ],
    ids=["ctrl-c", "sigterm", "error"],
)
def test_open_children_end_with_the_parent(tmp_path, raised, status):
    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)

    with pytest.raises(type(raised)), tracking.parent_run(cfg) as run:
        open_child = tracking.start_child_run(client, run, cell, {"seed": 0})
        done_child = tracking.start_child_run(client, run, cell, {"seed": 1})
        tracking.end_run(client, done_child, "FINISHED")
        raise raised

    assert client.get_run(run.parent_run_id).info.status == status
    assert client.get_run(open_child).info.status == status
    assert client.get_run(done_child).info.status == "FINISHED"  # a finished child stays so


# --- what the MLflow UI shows -------------------------------------------------------------------


def _trained(status="ok", reason="", diverged_epoch=None, costs=(0.6, 0.41234)):
    from tasks.core.results import TrainedNetwork

    return TrainedNetwork(
        cell=Cell(model="mlp", activation="relu", seed=0),
        run_id="r",
        init="he_normal",
        status=status,
        reason=reason,
        diverged_epoch=diverged_epoch,
        costs=costs,
        seconds_per_epoch=0.1,
        weights_path="w.npz",
    )


def test_each_child_says_its_status_and_why_as_its_description():
    nan = "the cost stopped being finite (nan) in epoch 0"
    assert tracking.child_description(_trained()) == "ok: trained 2 epochs, final cost 0.4123"
    assert tracking.child_description(_trained(), 0.868) == (
        "ok: test accuracy 0.8680 after 2 epochs"
    )
    assert tracking.child_description(_trained("diverged", nan, 0), float("nan")) == (
        f"diverged: {nan}; not scored on the test split"
    )
    degenerate = _trained("degenerate", "validation loss -4.026 is negative")
    assert tracking.child_description(degenerate, 0.67) == (
        "degenerate: validation loss -4.026 is negative; test accuracy 0.6700, not ranked with "
        "the sound runs"
    )


def test_the_ui_sees_a_model_training_experiment_a_described_parent_and_filterable_children(
    tmp_path,
):
    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)
    older = client.create_experiment("made-before")  # an experiment from before the tag
    assert tracking.ensure_experiment(client, "made-before", None) == older
    assert client.get_experiment(older).tags[tracking.EXPERIMENT_KIND_TAG] == (
        "custom_model_development"
    )

    with tracking.parent_run(cfg) as run:
        experiment = client.get_experiment(run.experiment_id)
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        cell = Cell(model="tutorial", activation="relu", seed=0)
        child = tracking.start_child_run(client, run, cell, {"seed": 0})
        diverged = _trained("diverged", "the cost stopped being finite (nan) in epoch 0", 0)
        tracking.log_training_outcome(client, child, diverged)
        tracking.end_run(client, child, "FINISHED")
        tracking.describe_parent(run, "- **mlp**: best is `gelu`", {"networks_ok": 0})

    found = client.search_runs([run.experiment_id], filter_string="tags.status = 'diverged'")
    assert [r.info.run_id for r in found] == [child]
    assert found[0].data.tags["mlflow.note.content"].startswith("diverged: the cost stopped")
    parent = client.get_run(run.parent_run_id)
    assert parent.data.tags["mlflow.note.content"] == "- **mlp**: best is `gelu`"
    assert parent.data.metrics == {"networks_ok": 0.0}


def test_per_class_metrics_sort_after_the_per_epoch_ones():
    from tasks.tracking.records import CLASS_PREFIXES

    per_epoch = ["cost", "epoch_seconds", "learning_rate", "test_accuracy", "val_loss"]
    per_class = [tracking.CLASS_METRIC.format(k) for k in range(10)]
    assert sorted(per_epoch + per_class) == per_epoch + sorted(per_class)  # the UI's order
    assert per_class[3] == CLASS_PREFIXES[0] + "3"  # what tasks.tracking.records reads back
