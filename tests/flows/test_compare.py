"""The whole flow as a user runs it: MLflow runs, metric histories, the report."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.compare import compare_activations
from tasks.core.config import load_config
from tasks.report.publish import ARTIFACT_KEYS
from tests.flows.conftest import PARAMS, small_overrides


def _runs(cfg):
    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


@pytest.mark.slow  # the whole flow
def test_flow_logs_one_parent_and_a_child_per_cell_and_writes_the_report(small_config):
    report = Path(compare_activations(small_config))
    client, parents, children = _runs(small_config)

    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    # tutorial x {softmax, relu} + mlp x {relu}: softmax is the tutorial's output only
    assert sorted(r.info.run_name for r in children) == [
        "mlp/relu/seed=0",
        "tutorial/relu/seed=0",
        "tutorial/softmax/seed=0",
    ]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        params = child.data.params
        assert {"model", "activation", "seed", "init", "epochs", "batch_size"} <= set(params)
        assert {"learning_rate", "lr_decay", "hidden_units", "optimizer", "loss"} <= set(params)
        assert {"test_accuracy", "test_loss"} <= set(child.data.metrics)
        history = client.get_metric_history(child.info.run_id, "cost")
        rates = client.get_metric_history(child.info.run_id, "learning_rate")
        status = child.data.tags["status"]
        if child.info.run_name == "tutorial/relu/seed=0":
            assert status == "diverged" and child.data.tags["diverged_epoch"] == "0"
            assert [m.step for m in history] == [0]
            # a diverged network is not scored
            assert math.isnan(child.data.metrics["test_accuracy"])
        else:
            assert status == "ok"
            assert [m.step for m in history] == [0, 1]  # one point per epoch, step = epoch
            assert [m.value for m in rates] == pytest.approx([0.1, 0.1 * 0.95])

    softmax = next(c for c in children if c.info.run_name == "tutorial/softmax/seed=0")
    assert softmax.data.metrics["test_accuracy"] > 0.8  # the synthetic classes are easy
    assert softmax.data.params["init"] == "zeros"
    # per-class accuracy and the confusion matrix as JSON (for reports), for every scored run
    per_class = [softmax.data.metrics[f"z_test_accuracy_class_{k}"] for k in range(10)]
    matrix = json.loads(
        Path(client.download_artifacts(softmax.info.run_id, "confusion_matrix.json")).read_text()
    )["matrix"]
    assert sum(map(sum, matrix)) == 200  # every test image once
    assert sum(matrix[k][k] for k in range(10)) / 200 == pytest.approx(
        softmax.data.metrics["test_accuracy"]
    )
    assert per_class == pytest.approx([matrix[k][k] / sum(matrix[k]) for k in range(10)])
    # its image only on each model's best run (the report's), not on every child
    with_image = {
        c.info.run_name
        for c in children
        if "confusion_matrix.png" in {a.path for a in client.list_artifacts(c.info.run_id)}
    }
    assert with_image == {"tutorial/softmax/seed=0", "mlp/relu/seed=0"}
    # every scored network's test predictions, for comparing networks image by image
    with np.load(client.download_artifacts(softmax.info.run_id, "test_predictions.npz")) as npz:
        predicted, labels = npz["predicted"], npz["label"]
    assert predicted.dtype == np.uint8 and len(predicted) == len(labels) == 200
    assert (predicted == labels).mean() == pytest.approx(softmax.data.metrics["test_accuracy"])
    assert json.loads(softmax.data.params["layer_sizes"]) == [784, 10]
    assert float(softmax.data.params["learning_rate"]) == 0.1

    # the parent records what was run and on what data
    tags = parent.data.tags
    assert len(tags["dataset.sha256"]) == 64 and tags["prefect.flow_run_id"]
    assert tags["grid_size"] == "3" and "versions.tensorflow" in tags
    # the learning rate each activation is ranked at, and the seeds' state
    choices = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "choices.json")).read_text()
    )
    assert {
        (c["model"], c["activation"], c["learning_rate"]) for c in choices["learning_rates"]
    } == {
        ("tutorial", "softmax", 0.1),
        ("tutorial", "relu", 0.1),
        ("mlp", "relu", 0.1),
    }
    config = client.download_artifacts(parent.info.run_id, "config.json")
    assert '"epochs": 2' in Path(config).read_text()
    # the data as MLflow dataset inputs: a sha256 over the whole arrays of each split
    inputs = {
        {t.key: t.value for t in i.tags}["mlflow.data.context"]: i
        for i in parent.inputs.dataset_inputs
    }
    assert sorted(inputs) == ["testing", "training", "validation"]
    (npz_path,) = (small_config.data.dir / "processed").glob("*.npz")
    with np.load(npz_path) as npz:
        whole = _sha256_of_arrays(npz["x_train"], npz["y_train"])
    training = inputs["training"]
    assert {t.key: t.value for t in training.tags}["sha256"] == whole
    assert training.dataset.digest == whole[:36]  # MLflow keeps 36 characters
    assert str(small_config.data.source) in training.dataset.source
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/results.csv"} <= logged
    assert {"report/summary.csv", "report/test_accuracy.png"} <= logged
    assert {"report/training_loss_tutorial.png", "report/training_loss_mlp.png"} <= logged

    # the report on disk: one row per child, and it names its parent run
    assert report == small_config.report.dir / parent.info.run_id
    assert (small_config.report.dir / "latest").resolve() == report.resolve()
    table = pd.read_csv(report / "results.csv")
    assert len(table) == 3
    assert set(table["run_id"]) == {c.info.run_id for c in children}
    assert table.set_index("run_id").loc[softmax.info.run_id, "status"] == "ok"
    markdown = (report / "report.md").read_text()
    assert "**tutorial**: best is `softmax`" in markdown
    assert parent.info.run_id in markdown
    assert (report / "report.html").read_text().count('src="data:image/png;base64,') >= 5

    # Prefect artifacts of this flow run, under stable keys
    artifacts = _artifacts(tags["prefect.flow_run_id"])
    assert set(artifacts) == set(ARTIFACT_KEYS.values())
    assert artifacts["activation-comparison"].type == "markdown"
    table = artifacts["activation-comparison-table"]
    assert table.type == "table" and len(json.loads(table.data)) == 3  # (model, activation) rows
    link = artifacts["activation-comparison-mlflow"]
    assert link.type == "markdown" or link.type == "link"
    assert f"/runs/{parent.info.run_id}" in link.data
    # the page shows its figures: inline, nothing linked relatively
    page = artifacts["activation-comparison"].data
    assert page.count("](data:image/png;base64,") >= 5 and ".png)" not in page
    # the progress artifact followed the grid to its end
    moved = artifacts["activation-comparison-progress"]
    assert moved.type == "progress" and float(moved.data) == 100.0
    assert moved.description.startswith("[3/3] ")
    # task runs are named by their cell, or by their group when trained stacked (train.stack)
    names = _task_run_names(tags["prefect.flow_run_id"])
    assert {
        "train tutorial/{softmax,relu}/seed=0",
        "evaluate tutorial/{softmax,relu}/seed=0",
    } <= names
    assert {"train mlp/relu/seed=0", "evaluate mlp/relu/seed=0"} <= names

    # the parent run as the MLflow UI shows it: the answer, and summary metrics
    description = parent.data.tags["mlflow.note.content"]
    assert description.startswith("- **tutorial**: best is `softmax`")
    assert "3 networks: 2 ok, 1 diverged, 0 degenerate." in description
    metrics = parent.data.metrics
    assert metrics["best_test_accuracy.tutorial"] == pytest.approx(
        softmax.data.metrics["test_accuracy"], abs=5e-5
    )
    assert (metrics["networks_ok"], metrics["networks_diverged"]) == (2, 1)
    assert softmax.data.tags["mlflow.note.content"].startswith("ok: test accuracy ")
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def _task_run_names(flow_run_id: str) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect:
        found = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {t.name for t in found}


def _sha256_of_arrays(*arrays: np.ndarray) -> str:
    """As tasks/data/prepare.py's array_digest documents it, computed without its code: sha256 over
    each array's dtype, shape and every byte, in order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _artifacts(flow_run_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as prefect:
        found = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


@pytest.mark.slow  # the whole flow
def test_flow_sweeps_rates_and_depths_and_adds_seeds_while_it_is_close(tmp_path, idx_folder):
    overrides = small_overrides(tmp_path, idx_folder) + [
        "train.epochs=1",
        "sweep.models=[mlp]",
        "sweep.activations=[relu, leaky_relu]",
        # leaky_relu with a slope of 1e-6 is relu to the last test image: they must tie
        "models.leaky_relu_slope=0.000001",
        "models.mlp.hidden_units=[16]",
        "sweep.learning_rates=[0.05, 0.2]",
        "sweep.depths=[1, 2]",
        "sweep.seeds={start: [0], until_separated: true, max: 2}",
    ]
    cfg = load_config(PARAMS, overrides)
    assert len(cfg.grid) == 2 * 2 * 2  # depths x activations x rates, seed 0
    report = Path(compare_activations(cfg))
    client, (parent,), children = _runs(cfg)

    # seed 0 at every rate, then seed 1 at each activation's chosen rate only (the tie persists)
    assert parent.data.tags["grid_size"] == "12" and len(children) == 12
    names = {c.info.run_name for c in children}
    assert "mlp/relu/depth=2/lr=0.05/seed=0" in names
    choices = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "choices.json")).read_text()
    )
    chosen = {(c["depth"], c["activation"]): c["learning_rate"] for c in choices["learning_rates"]}
    for child in children:
        params, name = child.data.params, child.info.run_name
        # each child logs the rate and layers it trained with, and its name says them
        depth = len(json.loads(params["layer_sizes"])) - 2
        assert json.loads(params["layer_sizes"]) == [784, *[16] * depth, 10]
        assert f"/depth={depth}/lr={float(params['learning_rate']):g}/" in name
        if name.endswith("seed=1"):
            assert float(params["learning_rate"]) == chosen[(depth, params["activation"])]
    for entry in choices["seeds"]:
        assert entry["seeds"] == [0, 1] and not entry["separated"]

    markdown = (report / "report.md").read_text()
    assert markdown.count("tie for best") == 2  # one headline per depth
    assert "with two hidden layers of 16 units" in markdown
    assert markdown.count("seeds: stopped at 2 seeds, the maximum (`sweep.seeds.max`)") == 2
    assert "learning rate chosen on validation accuracy: " in markdown
    assert "## Learning rates: validation accuracy" in markdown
    for figure in (
        "val_accuracy_vs_learning_rate_mlp_depth1.png",
        "val_accuracy_vs_learning_rate_mlp_depth2.png",
        "test_accuracy_vs_depth_mlp.png",
        "training_loss_mlp_depth2.png",
    ):
        assert f"]({figure})" in markdown and (report / figure).stat().st_size > 10_000
    summary = pd.read_csv(report / "summary.csv")
    assert sorted(zip(summary["depth"], summary["verdict"], strict=True)) == [
        (1, "best"),
        (1, "tie"),
        (2, "best"),
        (2, "tie"),
    ]


@pytest.mark.slow  # the whole flow
def test_a_second_run_reuses_the_preprocessed_data(small_config):
    compare_activations(small_config)
    processed = sorted((small_config.data.dir / "processed").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in processed]
    compare_activations(small_config)
    assert sorted((small_config.data.dir / "processed").glob("*.npz")) == processed
    assert [p.stat().st_mtime_ns for p in processed] == stamps
    _, parents, children = _runs(small_config)
    assert len(parents) == 2 and len(children) == 6
    # each parent run says per data stage whether it was cached or ran, and why
    first, second = sorted(parents, key=lambda r: r.info.start_time)
    assert first.data.tags["stage.download"] == "ran"
    assert "no manifest yet" in first.data.tags["stage.download.reason"]
    assert first.data.tags["stage.preprocess"] == "ran"
    assert first.data.tags["stage.preprocess.reason"] == "no preprocessed data cached yet"
    assert second.data.tags["stage.download"] == "cached"
    assert "unchanged (sha256 as recorded)" in second.data.tags["stage.download.reason"]
    assert second.data.tags["stage.preprocess"] == "cached"
    report = (small_config.report.dir / second.info.run_id / "report.md").read_text()
    assert "## Data stages" in report
    assert "- preprocess cached: inputs unchanged" in report


@pytest.mark.slow  # the whole flow
def test_bad_data_fails_the_parent_run_and_names_the_file(tmp_path, idx_folder):
    from tasks.data import DataError

    broken = tmp_path / "broken"
    broken.mkdir()
    for f in Path(idx_folder).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(b"<html>not found</html>")
    cfg = load_config(PARAMS, small_overrides(tmp_path, broken))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        compare_activations(cfg)
    _, parents, children = _runs(cfg)
    assert [p.info.status for p in parents] == ["FAILED"] and children == []


@pytest.mark.slow
def test_tutorial_softmax_on_fashion_mnist_reaches_80_percent_in_one_epoch(tmp_path, fashion_mnist):
    overrides = small_overrides(tmp_path, fashion_mnist)
    overrides += [
        "preprocess.val_size=5000",
        "train.epochs=1",
        "train.batch_size=100",
        "sweep.models=[tutorial]",
        "sweep.activations=[softmax, relu, sigmoid]",
    ]
    cfg = load_config(PARAMS, overrides)
    report = Path(compare_activations(cfg))
    table = pd.read_csv(report / "results.csv").set_index("activation")
    assert table.loc["softmax", "status"] == "ok"
    assert table.loc["softmax", "test_accuracy"] >= 0.80
    assert table.loc["relu", "status"] == "diverged"  # log(0) at once, recorded, not a crash
    # sigmoid: the cost falls towards 0 while the accuracy stays far from what that would mean
    assert table.loc["sigmoid", "status"] == "degenerate"
    assert "below" in table.loc["sigmoid", "reason"]
    assert "**tutorial**: best is `softmax`" in (report / "report.md").read_text()


@pytest.mark.slow
def test_on_fashion_mnist_the_mlp_with_relu_beats_the_tutorial_model(tmp_path, fashion_mnist):
    """The claim the project exists for, on real data: params.yaml's settings, 3 epochs each, and
    the sound model (relu in a hidden layer, cross-entropy on logits) tests better than the
    tutorial's (softmax of x·W + b, zero-initialised) by more than a point."""
    overrides = [
        f"data.source={fashion_mnist}",
        f"data.dir={tmp_path / 'data'}",
        "train.epochs=3",
        "sweep.models=[tutorial, mlp]",
        "sweep.activations=[softmax, relu]",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.experiment=test",
        f"report.dir={tmp_path / 'reports'}",
    ]
    report = Path(compare_activations(load_config(PARAMS, overrides)))
    table = pd.read_csv(report / "results.csv").set_index(["model", "activation"])
    tutorial, mlp = table.loc[("tutorial", "softmax")], table.loc[("mlp", "relu")]
    assert tutorial["status"] == "ok" and mlp["status"] == "ok"
    assert tutorial["epochs_run"] == mlp["epochs_run"] == 3
    assert mlp["test_accuracy"] > tutorial["test_accuracy"] + 0.01, table


@pytest.mark.slow  # the whole flow
def test_xor_a_linear_model_cannot_but_one_hidden_layer_can(tmp_path):
    overrides = [o for o in small_overrides(tmp_path, "xor") if not o.startswith("preprocess.")]
    overrides += ["train.epochs=3", "train.batch_size=100"]
    cfg = load_config(PARAMS, overrides)
    report = Path(compare_activations(cfg))
    table = pd.read_csv(report / "results.csv").set_index(["model", "activation"])
    assert table.loc[("tutorial", "softmax"), "test_accuracy"] <= 0.75 + 0.01  # linear: 3 corners
    assert table.loc[("mlp", "relu"), "test_accuracy"] >= 0.99
    assert "# Which activation? xor" in (report / "report.md").read_text()
