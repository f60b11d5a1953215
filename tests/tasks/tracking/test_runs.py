"""parent_run: the process it records, and on the way out: no child run of an interrupted or
failed flow stays RUNNING, and no weights file of its networks stays on disk."""

import contextlib
import os
import signal

import pytest
from mlflow.tracking import MlflowClient
from prefect.exceptions import TerminationSignal

from tasks.core.config import Cell, load_config
from tasks.core.paths import weights_path
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
def test_open_children_end_with_the_parent(tmp_path, sqlite_store, raised, status):
    cfg = _config(tmp_path)
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)

    with pytest.raises(type(raised)), tracking.parent_run(cfg) as run:
        open_child = tracking.start_child_run(client, run, cell, {"seed": 0})
        done_child = tracking.start_child_run(client, run, cell, {"seed": 1})
        tracking.end_run(client, done_child, "FINISHED")
        weights = _scratch_weights(cfg, run, done_child)
        raise raised

    assert client.get_run(run.parent_run_id).info.status == status
    assert client.get_run(open_child).info.status == status
    assert client.get_run(done_child).info.status == "FINISHED"  # a finished child stays so
    assert not weights.exists() and not weights.parent.exists()


def test_a_child_run_logs_every_param_that_identifies_its_cell():
    from tasks.core.cells import CELL_PARAMS, cell_key
    from tasks.core.config import ModelsConfig, TrainConfig

    cell = Cell(model="mlp", activation="relu", seed=3)
    params = tracking.child_params(
        cell, [784, 64, 10], "he_normal", "cross_entropy", ModelsConfig(), TrainConfig()
    )
    logged = {k: str(v) for k, v in params.items()}  # what MLflow gives back: strings

    assert set(CELL_PARAMS) <= logged.keys()
    assert cell_key(logged) == ("mlp", "relu", 3, TrainConfig().learning_rate, (784, 64, 10))


def test_a_parent_run_records_the_machine_and_the_numerical_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/cache/x")
    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)

    with tracking.parent_run(cfg) as run:
        pass

    tags = client.get_run(run.parent_run_id).data.tags
    for key in ("versions.python", "versions.tensorflow", "versions.numpy", "versions.mlflow"):
        assert tags[key][0].isdigit(), (key, tags[key])
    assert tags["env.cpu.count"] == str(__import__("os").cpu_count())
    assert tags["env.cpu.model"] and tags["env.cpu.isa"]
    assert tags["env.blas"].split()[0] in ("openblas", "mkl", "blis", "accelerate", "unknown")
    assert tags["env.onednn"] in ("on", "off")
    assert tags["env.var.XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"
    assert tags["env.var.TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=/cache/x"
    monkeypatch.delenv("TF_XLA_FLAGS")
    with tracking.parent_run(cfg) as run:
        pass
    assert client.get_run(run.parent_run_id).data.tags["env.var.TF_XLA_FLAGS"] == "unset"


def test_diagnostics_and_the_divergence_cause_are_logged_per_epoch_and_read_back(tmp_path):
    from tasks.core.results import NonFinite, TrainedNetwork
    from tasks.tracking.records import result_from_run

    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)
    params = {"model": "mlp", "activation": "relu", "seed": 0, "hidden_units": "[4, 3]"}
    with tracking.parent_run(cfg) as run:
        child = tracking.start_child_run(client, run, cell, params)
        for epoch in range(2):
            record = {
                "epoch": epoch,
                **dict.fromkeys(("cost", "val_loss", "val_accuracy", "learning_rate"), 0.5),
                "epoch_seconds": 1.0,
                "diagnostics": {
                    "layer1.dead_fraction": 0.5 + epoch / 10,
                    "layer2.grad_norm_ratio": 0.01,
                    "output.grad_norm": 2.0 if epoch == 0 else float("inf"),
                    "diagnostics_seconds": 0.02,
                },
            }
            tracking.log_epoch(client, child, record)
        cause = NonFinite("log(output) in the cost", 1, 7, 557, "-inf in 3 of 1,000 values")
        trained = TrainedNetwork(
            cell, child, "he_normal", "diverged", "the cost stopped being finite", 1,
            (0.5, float("nan")), 1.0, "w.npz", nonfinite=cause,
        )  # fmt: skip
        tracking.log_training_outcome(client, child, trained)
        tracking.end_run(client, child, "FINISHED")

    # one point per epoch, step = epoch, under the names the MLflow UI filters on
    history = client.get_metric_history(child, "layer1.dead_fraction")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6)]
    found = client.search_runs(
        [run.experiment_id], filter_string="metrics.`layer1.dead_fraction` > 0.55"
    )
    assert [r.info.run_id for r in found] == [child]

    result = result_from_run(client, client.get_run(child))
    assert result["diagnostics"] == {  # diagnostics_seconds is a metric, but not a layer's
        "layer1.dead_fraction": [0.5, 0.6],
        "layer2.grad_norm_ratio": [0.01, 0.01],
        "output.grad_norm": [2.0, float("inf")],  # MLflow stores inf as the largest float
    }
    assert result["hidden_units"] == [4, 3]
    assert result["nonfinite"] == {
        "tensor": "log(output) in the cost",
        "epoch": 1,
        "step": 7,
        "global_step": 557,
        "detail": "-inf in 3 of 1,000 values",
    }


def _config(tmp_path):
    return load_config(
        None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"data.dir={tmp_path / 'data'}"]
    )


def _scratch_weights(cfg, run, child_run_id):
    """A weights file where train_network writes one (data/weights/<parent>/<child>.npz)."""
    path = weights_path(cfg.data.dir, run.parent_run_id, child_run_id)
    assert path.parent.is_dir()  # made when the flow run starts
    path.write_bytes(b"weights")
    return path


def test_a_finished_parent_records_its_process_and_leaves_no_weights(tmp_path, sqlite_store):
    cfg = _config(tmp_path)
    client = MlflowClient(cfg.tracking.uri)

    with tracking.parent_run(cfg) as run:
        child = tracking.start_child_run(
            client, run, Cell(model="mlp", activation="relu", seed=0), {}
        )
        weights = _scratch_weights(cfg, run, child)

    parent = client.get_run(run.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["process.pid"] == str(os.getpid())
    assert {"process.host", "process.start_time", "process.cwd"} <= set(parent.data.tags)
    assert not weights.parent.exists() and (tmp_path / "data" / "weights").is_dir()


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


def test_queued_params_and_epoch_metrics_are_in_the_store_after_wait_and_a_failed_write_raises(
    tmp_path,
):
    from mlflow.exceptions import MlflowException

    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)
    with tracking.parent_run(cfg) as run:
        pending: list = []
        params = {"model": "mlp", "learning_rate": 0.1}
        child = tracking.start_child_run(client, run, cell, params, pending=pending)
        for epoch in range(5):
            keys = ("cost", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")
            record = {"epoch": epoch, **dict.fromkeys(keys, float(epoch))}
            tracking.log_epoch(client, child, record, pending)
        assert len(pending) == 6  # queued, one handle for the params and one per epoch
        tracking.wait_logged(pending)
        assert pending == []
        history = client.get_metric_history(child, "epoch_seconds")
        assert sorted((m.step, m.value) for m in history) == [(e, float(e)) for e in range(5)]
        assert client.get_run(child).data.params == {"model": "mlp", "learning_rate": "0.1"}

        # a write the store refuses (the run was deleted) is raised by wait_logged, not lost
        tracking.end_run(client, child, "FINISHED")
        client.delete_run(child)
        tracking.log_epoch(client, child, {"epoch": 5, **dict.fromkeys(keys, 1.0)}, pending)
        with pytest.raises(MlflowException):
            tracking.wait_logged(pending)


# --- the data as MLflow dataset inputs -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The specified dataset source:UserWarning")  # MLflow's
def test_the_dataset_inputs_come_from_the_split_digests_without_reading_the_arrays(
    tmp_path, sqlite_store, idx_folder, monkeypatch
):
    """The digests, schema and profile are those MLflow makes from the real arrays, yet the .npz
    is not opened: a cached run knows them from the preprocess manifest."""
    import mlflow.data
    import numpy as np

    from tasks.core.config import DataConfig, PreprocessConfig
    from tasks.data.download import fetch_dataset
    from tasks.data.prepare import array_digest, prepare_splits

    cfg = _config(tmp_path)
    raw = fetch_dataset(DataConfig(source=str(idx_folder), dir=cfg.data.dir))
    prepared = prepare_splits(raw, PreprocessConfig(val_size=100), cfg.data.dir)
    with np.load(prepared.path) as npz:
        arrays = {key: npz[key] for key in npz.files}

    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("the .npz was read"))
    with tracking.parent_run(cfg) as run:
        tracking.log_dataset(run, raw, prepared)

    logged = MlflowClient(cfg.tracking.uri).get_run(run.parent_run_id).inputs.dataset_inputs
    by_context = {{t.key: t.value for t in i.tags}["mlflow.data.context"]: i for i in logged}
    for split, context in tracking.SPLITS.items():
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        sha = array_digest(x, y)
        expected = mlflow.data.from_numpy(x, source="file:///data", targets=y, digest=sha[:36])
        dataset = by_context[context].dataset
        assert {t.key: t.value for t in by_context[context].tags}["sha256"] == sha
        assert dataset.digest == sha[:36] and dataset.name == f"{raw.name}-{split}"
        assert dataset.schema == expected._to_mlflow_entity().schema
        assert dataset.profile == expected._to_mlflow_entity().profile
        assert str(idx_folder) in dataset.source


@pytest.mark.filterwarnings("ignore:The specified dataset source:UserWarning")  # MLflow's
def test_two_runs_logging_the_same_new_data_at_once_both_get_it(tmp_path, idx_folder, monkeypatch):
    """Another run added the datasets between this run's look and its own addition (what two
    `actlab run` started together in a fresh folder meet): MLflow refuses the duplicate, and the
    run is linked to the datasets the other added; any other refusal is raised."""
    from mlflow.exceptions import MlflowException

    from tasks.core.config import DataConfig, PreprocessConfig
    from tasks.data.download import fetch_dataset
    from tasks.data.prepare import prepare_splits

    cfg = _config(tmp_path)
    raw = fetch_dataset(DataConfig(source=str(idx_folder), dir=cfg.data.dir))
    prepared = prepare_splits(raw, PreprocessConfig(val_size=100), cfg.data.dir)
    with tracking.parent_run(cfg) as other:
        tracking.log_dataset(other, raw, prepared)
    real, refusals = MlflowClient.log_inputs, []

    def raced(self, run_id, datasets=None, **kwargs):
        if refusals:
            return real(self, run_id, datasets=datasets, **kwargs)
        refusals.append(run_id)
        raise MlflowException(
            "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
            "datasets.name, datasets.digest"
        )

    monkeypatch.setattr(MlflowClient, "log_inputs", raced)
    with tracking.parent_run(cfg) as run:
        tracking.log_dataset(run, raw, prepared)

    client = MlflowClient(cfg.tracking.uri)
    linked = [client.get_run(r.parent_run_id).inputs.dataset_inputs for r in (other, run)]
    assert refusals == [run.parent_run_id]
    assert [len(inputs) for inputs in linked] == [3, 3]
    digests = [sorted(i.dataset.digest for i in inputs) for inputs in linked]
    assert digests[0] == digests[1]  # the same three datasets

    def refused(self, run_id, datasets=None, **kwargs):
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: the run was deleted")

    monkeypatch.setattr(MlflowClient, "log_inputs", refused)
    with tracking.parent_run(cfg) as third, pytest.raises(MlflowException, match="deleted"):
        tracking.log_dataset(third, raw, prepared)


def test_the_store_opened_early_is_the_one_the_parent_run_uses(tmp_path, monkeypatch):
    """open_store_early makes and opens a new SQLite store in its thread; the parent run then
    uses that store as MLflow keeps it for the URI (no second opening), and a store that cannot
    be opened is left for the parent run to report."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    thread = tracking.open_store_early(uri)
    thread.join(timeout=120)
    assert not thread.is_alive() and (tmp_path / "mlflow.db").is_file()
    opened = []
    real = SqlAlchemyStore.__init__
    monkeypatch.setattr(
        SqlAlchemyStore, "__init__", lambda self, *a, **k: opened.append(a) or real(self, *a, **k)
    )
    cfg = load_config(None, [f"tracking.uri={uri}", f"data.dir={tmp_path / 'data'}"])
    with tracking.parent_run(cfg) as run:
        assert MlflowClient(uri).get_run(run.parent_run_id).info.status == "RUNNING"
    assert opened == []  # the store the thread opened

    assert tracking.open_store_early("http://127.0.0.1:5000") is None  # a server: nothing to do
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    thread = tracking.open_store_early(f"sqlite:///{blocked / 'mlflow.db'}")
    thread.join(timeout=60)
    assert not thread.is_alive()  # ended quietly: parent_run would say what is wrong


@pytest.mark.parametrize("created_here", [True, False])
def test_a_childs_test_artifacts_land_in_its_artifact_folder_without_looking_the_run_up(
    tmp_path, monkeypatch, created_here
):
    """A run this process created gets its predictions and confusion matrix straight in its
    artifact folder (no `get_run`: it loads every tag, param and metric); a run created elsewhere
    (here: forgotten) goes through MLflow's lookup. The files are the same either way."""
    import numpy as np
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from tasks.tracking.predictions import CONFUSION_FILE, PREDICTIONS_FILE, decode, local_artifacts

    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)
    predicted, labels = np.array([1, 2, 2, 0]), np.array([1, 2, 0, 0])
    matrix = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    with tracking.parent_run(cfg) as run:
        child = tracking.start_child_run(client, run, cell, {"seed": 0})
        if not created_here:
            tracking._ARTIFACT_URIS.pop(child)
        looked_up = []
        real_get_run = TrackingServiceClient.get_run

        def get_run(self, run_id):
            looked_up.append(run_id)
            return real_get_run(self, run_id)

        monkeypatch.setattr(TrackingServiceClient, "get_run", get_run)
        trained = _trained()
        tracking.log_evaluation(client, child, trained, {"loss": 0.5, "accuracy": 0.75},
                                predicted, labels, matrix, [0.5, 1.0, 1.0])  # fmt: skip
        tracking.end_run(client, child, "FINISHED")
        monkeypatch.undo()
    assert (looked_up == []) is created_here
    assert child not in tracking._ARTIFACT_URIS  # forgotten when the run ends
    folder = local_artifacts(client.get_run(child).info.artifact_uri)
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFUSION_FILE, PREDICTIONS_FILE])
    got_predicted, got_labels = decode(folder / PREDICTIONS_FILE)
    assert got_predicted.tolist() == predicted.tolist() and got_labels.tolist() == labels.tolist()


@pytest.mark.parametrize("ending", ["finished", "failed"])
def test_a_copy_of_mlflow_db_alone_holds_a_run_once_it_has_ended(tmp_path, ending):
    """The store is written in WAL mode (its latest writes in mlflow.db-wal until a checkpoint);
    the flow run's end checkpoints it, so copying mlflow.db alone loses nothing, however the
    run ended."""
    import shutil
    import sqlite3

    cfg = _config(tmp_path)
    client = MlflowClient(cfg.tracking.uri)
    with pytest.raises(RuntimeError) if ending == "failed" else contextlib.nullcontext():
        with tracking.parent_run(cfg) as run:
            child = tracking.start_child_run(
                client, run, Cell(model="mlp", activation="relu", seed=0), {"seed": 0}
            )
            client.log_metric(child, "cost", 0.25)
            tracking.end_run(client, child, "FINISHED")
            if ending == "failed":
                raise RuntimeError("stopped")
    wal = tmp_path / "mlflow.db-wal"  # emptied, or gone with the last connection
    assert not wal.exists() or wal.stat().st_size == 0  # all of it in mlflow.db
    shutil.copyfile(tmp_path / "mlflow.db", tmp_path / "copy.db")
    with sqlite3.connect(tmp_path / "copy.db") as con:
        rows = con.execute("SELECT run_uuid, status FROM runs ORDER BY start_time").fetchall()
        cost = con.execute("SELECT value FROM metrics WHERE key = 'cost'").fetchall()
    con.close()
    status = "FINISHED" if ending == "finished" else "FAILED"
    assert rows == [(run.parent_run_id, status), (child, "FINISHED")] and cost == [(0.25,)]


def test_local_predictions_are_read_once_while_their_file_stays_the_same(tmp_path):
    """decode_local keeps what it read (each seed round's decision reads the earlier rounds'
    predictions again), read-only, and reads a file written anew since."""
    import numpy as np

    from tasks.tracking.predictions import decode_local, encode

    path = tmp_path / "test_predictions.npz"
    path.write_bytes(encode(np.array([1, 2, 3]), np.array([1, 2, 0])))
    first = decode_local(path)
    assert first[0].tolist() == [1, 2, 3] and not first[0].flags.writeable
    assert all(a is b for a, b in zip(decode_local(path), first, strict=True))

    (tmp_path / "new.npz").write_bytes(encode(np.array([4, 5]), np.array([4, 4])))
    (tmp_path / "new.npz").replace(path)
    assert decode_local(path)[0].tolist() == [4, 5]
    assert decode_local(tmp_path / "missing.npz") is None
