"""MLflow at the edges: one parent run per flow run, one child run per grid cell, and what is
logged on each.

Everything goes through `MlflowClient` with explicit run ids. MLflow's fluent API keeps the active
run per thread, and Prefect runs tasks in worker threads, where a fluent call would silently start
an orphan run. Which store: `tasks.core.uris`.
"""

import json
import math
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect.exceptions import TerminationSignal
from pydantic import BaseModel, ConfigDict

from tasks.core.config import Cell, Config, ModelsConfig, TrainConfig
from tasks.core.dotted import flatten
from tasks.core.files import explaining_full_disk
from tasks.core.paths import WEIGHTS_SPACE_HINT, run_weights_dir
from tasks.core.results import PreparedData, RawDataset, StageOutcome, TrainedNetwork
from tasks.core.uris import artifact_location, resolve_tracking_uri, sqlite_path
from tasks.data.prepare import split_digests
from tasks.tracking.listing import PARENT_TAG
from tasks.tracking.predictions import CONFUSION_FILE, PREDICTIONS_FILE, encode
from tasks.tracking.provenance import run_tags, worker_tags
from tasks.tracking.reconcile import process_tags
from tasks.tracking.store import checkpoint, creating_store, tune_sqlite

# Ctrl-C, and SIGTERM as Prefect's flow engine raises it: the run was stopped, not broken.
INTERRUPTS = (KeyboardInterrupt, TerminationSignal)


class RunContext(BaseModel):
    """What a task needs to log into the right place; small, so it travels to any worker."""

    model_config = ConfigDict(frozen=True)
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def client(run: RunContext) -> MlflowClient:
    if sqlite_path(run.tracking_uri) is not None:
        tune_sqlite()  # a Dask worker's first connection to the store, too
    return MlflowClient(tracking_uri=run.tracking_uri)


# What the MLflow UI shows: MLflow 3 opens an experiment by its kind, and without this tag on the
# GenAI overview (traces) instead of the runs. (MLflow 3.17's UI also follows its GenAI / Model
# training switch: the URLs this project prints choose the latter, see tasks.core.uris.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # a run's description in the MLflow UI (Markdown)
# Per-class test accuracy: the leading "z_" sorts these ten one-bar charts after the per-epoch
# ones in the MLflow UI, which orders a run's charts by name. Runs recorded before were logged as
# `test_accuracy_class_<k>`; tasks.tracking.records reads both.
CLASS_METRIC = "z_test_accuracy_class_{}"


def ensure_experiment(mlflow: MlflowClient, name: str, location: str | None) -> str:
    """The experiment's id, created if needed; tagged as a model-development experiment."""
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        try:
            experiment_id = mlflow.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
            return experiment_id
        except MlflowException:  # another process created it between the two calls
            found = mlflow.get_experiment_by_name(name)
            if found is None:
                raise
    if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag existed
        mlflow.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return found.experiment_id


def config_record(cfg: Config) -> dict:
    """The resolved config as logged: JSON types, the tracking URI's password redacted (the
    config's JSON form does that)."""
    return cfg.model_dump(mode="json")


def config_params(record: dict) -> dict[str, str]:
    """A config record as flat MLflow params: `section.key` -> value (lists as JSON)."""
    return {
        key: json.dumps(value) if isinstance(value, list | tuple) else str(value)
        for key, value in flatten(record).items()
    }


# Set when the flow is interrupted: training threads stop at their next epoch instead of logging on
# to runs that are being closed.
STOPPING = threading.Event()
# Set once an interrupted flow's MLflow runs are ended: from then on nothing of the run's record is
# left to write, so the CLI may leave without waiting for Prefect to finish unwinding.
RUNS_CLOSED = threading.Event()


def open_store_early(uri: str) -> threading.Thread | None:
    """Open a SQLite store (made from its template the first time: tasks.tracking.store) in a
    background thread, and return the thread; None for any other store.

    Opening it imports MLflow's database layer (SQLAlchemy's dialects, Alembic) and checks the
    schema: about 0.6 s in the main thread just after Prefect has created the flow run. Started
    as the command waits for Prefect, it is done meanwhile, mostly while the main thread waits
    for the server's answers; `parent_run` then finds the store open (MLflow keeps one store per
    URI). Any error is left to `parent_run`, which opens the store as before and raises it."""
    if sqlite_path(uri) is None:
        return None

    def open_store() -> None:
        try:
            with creating_store(uri):
                MlflowClient(tracking_uri=uri)  # opens the store (and keeps it for the URI)
        except Exception:  # noqa: BLE001 (parent_run opens it again and says what is wrong)
            pass

    thread = threading.Thread(target=open_store, name="open-mlflow-store", daemon=True)
    thread.start()
    return thread


@contextmanager
def parent_run(cfg: Config, flow_run_id: str | None = None) -> Iterator[RunContext]:
    """Open the flow run's parent MLflow run; end it FINISHED, FAILED, or KILLED on Ctrl-C, and
    remove its networks' weights files (`data/weights/<parent run id>/`) whichever way it ends.

    The run records its process (`tasks.tracking.reconcile`): if the process is killed without
    warning, the next command marks the run FAILED and removes the weights instead."""
    STOPPING.clear()
    RUNS_CLOSED.clear()
    uri = resolve_tracking_uri(cfg.tracking.uri)
    with creating_store(uri):  # a fresh mlflow.db and the experiment: one process at a time
        mlflow = MlflowClient(tracking_uri=uri)  # creates (migrates) the store on first use
        experiment_id = ensure_experiment(mlflow, cfg.tracking.experiment, artifact_location(uri))
    tags = run_tags(flow_run_id)
    tags.update(process_tags())  # who logs it: a run whose process dies unseen is found by it
    tags["grid_size"] = str(len(cfg.grid))
    tags["runner.kind"] = cfg.runner.kind
    tags.update({k.replace("worker.", "flow."): v for k, v in worker_tags().items()})
    run = mlflow.create_run(
        experiment_id, run_name=f"compare/{time.strftime('%Y-%m-%d_%H%M%S')}", tags=tags
    )
    run_id = run.info.run_id
    record = config_record(cfg)
    mlflow.log_dict(run_id, record, "config.json")
    mlflow.log_batch(run_id, params=[Param(k, v) for k, v in config_params(record).items()])
    scratch = run_weights_dir(cfg.data.dir, run_id)  # its networks' weights: gone when it ends
    with explaining_full_disk(scratch, "the run's weights folder", WEIGHTS_SPACE_HINT):
        scratch.mkdir(parents=True, exist_ok=True)
    try:
        yield RunContext(tracking_uri=uri, experiment_id=experiment_id, parent_run_id=run_id)
    except INTERRUPTS:
        STOPPING.set()
        end_unfinished_children(mlflow, experiment_id, run_id, "KILLED")
        end_run(mlflow, run_id, "KILLED")
        shutil.rmtree(scratch, ignore_errors=True)
        RUNS_CLOSED.set()
        raise
    except BaseException:
        end_unfinished_children(mlflow, experiment_id, run_id, "FAILED")
        end_run(mlflow, run_id, "FAILED")
        raise
    else:
        end_run(mlflow, run_id, "FINISHED")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        checkpoint(uri)  # mlflow.db alone holds the run


def tag_selection(run: RunContext, trained: int, grid_size: int) -> None:
    """A run that trains part of its config's grid (`actlab reproduce` of one run or a few):
    `grid_size` is what it trains, `grid.full_size` what the whole grid would."""
    client(run).log_batch(
        run.parent_run_id,
        tags=[RunTag("grid_size", str(trained)), RunTag("grid.full_size", str(grid_size))],
    )


def end_unfinished_children(
    mlflow: MlflowClient, experiment_id: str, parent_run_id: str, status: str
) -> None:
    """End the parent's children still RUNNING (interrupted between their tasks, or in one that
    could not end its own run), so no run stays RUNNING forever."""
    children = mlflow.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    for child in children:
        end_run(mlflow, child.info.run_id, status)


def tag_dataset(run: RunContext, raw: RawDataset) -> None:
    """Record which data the parent run used: its source and the digest of its content."""
    client(run).log_batch(
        run.parent_run_id,
        tags=[
            RunTag("dataset.source", raw.source),
            RunTag("dataset.name", raw.name),
            RunTag("dataset.sha256", raw.digest),
        ],
    )


SPLITS = {"train": "training", "val": "validation", "test": "testing"}  # npz prefix -> context
DIGEST_CHARS = 36  # MLflow stores at most 36 characters of a dataset digest


def log_dataset(run: RunContext, raw: RawDataset, prepared: PreparedData) -> None:
    """The preprocessed splits as the parent run's MLflow dataset inputs (contexts training,
    validation, testing), each with its sha256 over the whole arrays and the data's source.

    The digests, dtypes and shapes come with `prepared` (from the preprocess manifest when the
    .npz was cached), so the arrays are not read again: MLflow's schema and profile only need
    their dtype and shape, which zero-strided stand-ins carry. MLflow keeps 36 characters of a
    digest: the digest is the sha256's first 36 hex digits and the whole sha256 is the input tag
    `sha256`.
    """
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    if raw.files:
        source = Path(next(iter(raw.files.values()))).resolve().parent.as_uri()
    else:
        source = CodeDatasetSource({"generator": f"tasks.data ({raw.source})"})
    splits = prepared.splits or _read_split_digests(prepared.path)
    inputs = []
    for split, context in SPLITS.items():
        digest = splits[split]
        x = np.broadcast_to(np.zeros((), digest.x_dtype), digest.x_shape)  # no data, no memory
        y = np.broadcast_to(np.zeros((), digest.y_dtype), digest.y_shape)
        with warnings.catch_warnings():  # a path is both a local and an artifact source
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(
                x, source=source, targets=y, name=f"{raw.name}-{split}",
                digest=digest.sha256[:DIGEST_CHARS],
            )  # fmt: skip
        tags = [InputTag("mlflow.data.context", context), InputTag("sha256", digest.sha256)]
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=tags))
    mlflow = client(run)
    try:
        mlflow.log_inputs(run.parent_run_id, datasets=inputs)
    except MlflowException as exc:
        # Two runs of one experiment logging the same new data at once: MLflow looks for each
        # dataset, then adds the missing ones, and the later of the two additions breaks the
        # datasets' uniqueness (its own were rolled back). They exist now: logging again links
        # this run to them.
        if DATASET_RACE not in str(exc):
            raise
        mlflow.log_inputs(run.parent_run_id, datasets=inputs)


DATASET_RACE = "UNIQUE constraint failed: datasets."  # SQLite's words, through a server too


def _read_split_digests(data_path: str) -> dict:
    with np.load(data_path, allow_pickle=False) as npz:
        return split_digests(npz)


def tag_stages(run: RunContext, stages: dict[str, StageOutcome]) -> None:
    """Per cached stage, `stage.<name>` = cached | ran and `stage.<name>.reason` = why."""
    tags = []
    for name, stage in stages.items():
        tags.append(RunTag(f"stage.{name}", stage.status))
        tags.append(RunTag(f"stage.{name}.reason", stage.reason[:5000]))  # MLflow tag limit
    client(run).log_batch(run.parent_run_id, tags=tags)


def child_params(
    cell: Cell,
    layer_sizes: list[int],
    init: str,
    loss: str,
    models: ModelsConfig,
    train: TrainConfig,
) -> dict:
    """Every hyperparameter of one grid cell, as MLflow params."""
    return {
        "model": cell.model,
        "activation": cell.activation,
        "seed": cell.seed,
        "layer_sizes": json.dumps(layer_sizes),
        "hidden_units": json.dumps(layer_sizes[1:-1]),
        "init": init,
        "loss": loss,
        "epochs": train.epochs,
        "batch_size": train.batch_size,
        "learning_rate": train.learning_rate,
        "lr_decay": train.lr_decay,
        "schedule": train.schedule,
        "optimizer": train.optimizer,
        # validation images the per-layer diagnostics were measured on; 0 = none
        "diagnostics_probe": train.probe_size if train.diagnostics else 0,
        **({"momentum": train.momentum} if train.optimizer == "momentum" else {}),
        **(
            {"leaky_relu_slope": models.leaky_relu_slope} if cell.activation == "leaky_relu" else {}
        ),
    }


STACK_TAG = "stack.group"  # on each network trained stacked: its group, e.g. mlp/{relu,tanh}/seed=0


def start_child_run(
    mlflow: MlflowClient,
    run: RunContext,
    cell: Cell,
    params: dict,
    group: str | None = None,
    pending: list | None = None,
) -> str:
    """The child run of `cell`, with its params; `group`: the networks it trains with in one
    compiled program (`train.stack`), tagged `stack.group`. With `pending` (as log_epoch's), the
    params are queued on the metrics writer thread, ahead of the run's epochs, and written while
    training starts: wait_logged(pending) before anything reads them back."""
    _check_not_stopping()
    child = mlflow.create_run(
        run.experiment_id,
        run_name=cell.name,
        tags={
            PARENT_TAG: run.parent_run_id,
            "model": cell.model,
            "activation": cell.activation,
            "seed": str(cell.seed),
            "status": "running",
            **worker_tags(),
            **({STACK_TAG: group} if group else {}),
        },
    )
    run_id = child.info.run_id
    with _ARTIFACT_URIS_LOCK:
        _ARTIFACT_URIS[run_id] = child.info.artifact_uri
    _log_batch(mlflow, run_id, pending, params=[Param(k, str(v)) for k, v in params.items()])
    return run_id


# Each child run's artifact URI, as MLflow gave it when this process created the run, until the
# run ends: MLflow's own `log_artifacts` looks the run up first (a `get_run` that loads its every
# tag, param and metric: ~3.5 ms of a child's ~4.5 ms artifact upload).
_ARTIFACT_URIS: dict[str, str] = {}
_ARTIFACT_URIS_LOCK = threading.Lock()


def _log_artifacts(mlflow: MlflowClient, run_id: str, folder: str) -> None:
    """`mlflow.log_artifacts(run_id, folder)`, straight to the run's artifact repository when
    this process created the run (another process's run: through MLflow's lookup)."""
    with _ARTIFACT_URIS_LOCK:
        uri = _ARTIFACT_URIS.get(run_id)
    if uri is None:
        mlflow.log_artifacts(run_id, folder)
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(uri, tracking_uri=mlflow.tracking_uri).log_artifacts(folder)


def _metric(key: str, value: float, step: int = 0) -> Metric:
    return Metric(key, float(value), int(time.time() * 1000), step)


def _check_not_stopping() -> None:
    """The flow was interrupted: a network still queued or training in a thread stops here."""
    if STOPPING.is_set():
        raise KeyboardInterrupt("the flow was interrupted")


def log_epoch(mlflow: MlflowClient, run_id: str, record: dict, pending: list | None = None) -> None:
    """One epoch's metrics with step = epoch, logged as soon as the epoch ends: the cost, the
    validation metrics, the rate, the time, and the per-layer diagnostics when measured
    (`layer1.dead_fraction`, `layer1.grad_norm_ratio`, ..., `output.grad_norm`,
    `diagnostics_seconds`: names the MLflow UI filters and charts per run).

    With `pending` (a list), the write is queued on this process's metrics writer thread, which
    writes while the next epoch trains, and its future appended: `wait_logged(pending)` before the
    run ends (and before anything reads these metrics back). (Not MLflow's own asynchronous
    logging: ending a run shuts its queue down, which waits up to a second for the queue's thread
    to notice, every run.)"""
    _check_not_stopping()
    step = record["epoch"]
    keys = ("cost", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")
    metrics = [_metric(k, record[k], step) for k in keys]
    metrics += [_metric(k, v, step) for k, v in record.get("diagnostics", {}).items()]
    for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
        _log_batch(mlflow, run_id, pending, metrics=metrics[i : i + 1000])


def _log_batch(mlflow: MlflowClient, run_id: str, pending: list | None, **batch) -> None:
    """One MLflow batch written now (`pending` None), or queued on the writer thread with its
    future appended to `pending`."""
    if pending is None:
        mlflow.log_batch(run_id, **batch)
    else:
        pending.append(_writer().submit(mlflow.log_batch, run_id, **batch))


_WRITER: list[ThreadPoolExecutor] = []  # one writer thread per process, made on first use
_WRITER_LOCK = threading.Lock()


def _writer() -> ThreadPoolExecutor:
    """The thread that writes queued epoch metrics, one batch after another, in order."""
    with _WRITER_LOCK:
        if not _WRITER:
            _WRITER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="epoch-metrics"))
        return _WRITER[0]


def wait_logged(pending: list) -> None:
    """Wait until the queued writes of `log_epoch(..., pending)` are in the store; an error one of
    them met (e.g. a full disk) is raised here."""
    while pending:
        pending.pop(0).result()


NONFINITE_TAG = "nonfinite"  # tags nonfinite.tensor, .epoch, .step, .global_step, .detail


def child_description(trained: TrainedNetwork, test_accuracy: float | None = None) -> str:
    """A child run's description in the MLflow UI: its status and why, e.g. `diverged: the cost
    stopped being finite (nan) in epoch 0`, or `ok: test accuracy 0.8680 after 10 epochs`."""
    if trained.status == "ok":
        text = f"ok: trained {trained.epochs_run} epochs, final cost {trained.final_cost:.4g}"
        if test_accuracy is not None and math.isfinite(test_accuracy):
            text = f"ok: test accuracy {test_accuracy:.4f} after {trained.epochs_run} epochs"
        return text
    text = f"{trained.status}: {trained.reason}" if trained.reason else trained.status
    if trained.status == "diverged":
        text += "; not scored on the test split"
    elif test_accuracy is not None and math.isfinite(test_accuracy):
        text += f"; test accuracy {test_accuracy:.4f}, not ranked with the sound runs"
    return text


def log_training_outcome(
    mlflow: MlflowClient, run_id: str, trained: TrainedNetwork, pending: list | None = None
) -> None:
    """The status tag (ok / diverged / degenerate), its reason, the divergence epoch, and the
    run's description saying so; with `pending`, queued on the writer thread (as log_epoch)."""
    tags = [RunTag("status", trained.status), RunTag(DESCRIPTION_TAG, child_description(trained))]
    metrics = []
    if trained.reason:
        tags.append(RunTag("status_reason", trained.reason))
    if trained.diverged_epoch is not None:
        tags.append(RunTag("diverged_epoch", str(trained.diverged_epoch)))
        metrics.append(_metric("diverged_epoch", trained.diverged_epoch))
    if trained.nonfinite is not None:  # where it first stopped being finite
        cause = trained.nonfinite
        tags += [
            RunTag(f"{NONFINITE_TAG}.tensor", cause.tensor),
            RunTag(f"{NONFINITE_TAG}.epoch", str(cause.epoch)),
            RunTag(f"{NONFINITE_TAG}.step", str(cause.step)),
            RunTag(f"{NONFINITE_TAG}.global_step", str(cause.global_step)),
            RunTag(f"{NONFINITE_TAG}.detail", cause.detail[:5000]),
        ]
    _log_batch(mlflow, run_id, pending, metrics=metrics, tags=tags)


def log_test_metrics(
    mlflow: MlflowClient,
    run_id: str,
    test: dict[str, float],
    trained: TrainedNetwork,
    class_accuracy: Sequence[float] = (),
) -> None:
    """`test_loss` and `test_accuracy`, the accuracy on each class (NaN, a class with no test
    image, left out), and the run's description updated with the accuracy: one batch."""
    metrics = [_metric(f"test_{k}", v) for k, v in test.items()]
    per_class = [_metric(CLASS_METRIC.format(k), a) for k, a in enumerate(class_accuracy)]
    metrics += [m for m in per_class if m.value == m.value]
    description = RunTag(DESCRIPTION_TAG, child_description(trained, test.get("accuracy")))
    mlflow.log_batch(run_id, metrics=metrics, tags=[description])


def log_evaluation(
    mlflow: MlflowClient,
    run_id: str,
    trained: TrainedNetwork,
    test: dict[str, float],
    predicted: np.ndarray,
    labels: np.ndarray,
    matrix: np.ndarray,
    class_accuracy: list[float],
) -> None:
    """A scored network's test results in two writes: `test_loss`, `test_accuracy`, the accuracy
    on each class and the run's description with the accuracy (one batch); every test image's
    predicted class and true label (`test_predictions.npz`, tasks.tracking.predictions) and the
    confusion matrix (`confusion_matrix.json`, for reports) as artifacts (one upload).

    The matrix's image is drawn only for the report's best run (log_best_figure): a PNG per
    child cost more than the rest of its evaluation, and no one opens the others."""
    log_test_metrics(mlflow, run_id, test, trained, class_accuracy)
    confusion = {
        "rows": "true class",
        "columns": "predicted class",
        "matrix": [[int(v) for v in row] for row in matrix],
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / PREDICTIONS_FILE).write_bytes(encode(predicted, labels))
        (Path(tmp) / CONFUSION_FILE).write_text(json.dumps(confusion, indent=2))
        _log_artifacts(mlflow, run_id, tmp)


CONFUSION_FIGURE = "confusion_matrix.png"


def log_best_figure(run: RunContext, child_run_id: str, path: Path) -> None:
    """The report's figure of its best run's confusion matrix, on that child run as
    `confusion_matrix.png`, so the MLflow UI shows it where people open the winner."""
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / CONFUSION_FIGURE
        shutil.copyfile(path, named)
        client(run).log_artifact(child_run_id, str(named))


def end_run(mlflow: MlflowClient, run_id: str, status: str) -> None:
    mlflow.set_terminated(run_id, status=status)
    with _ARTIFACT_URIS_LOCK:
        _ARTIFACT_URIS.pop(run_id, None)


@contextmanager
def ending_on_error(mlflow: MlflowClient, run_id: str) -> Iterator[None]:
    """End the child run `run_id` KILLED if the block is interrupted, FAILED if it raises, so no
    run is left RUNNING; the exception goes on. A block that succeeds leaves the run open."""
    try:
        yield
    except INTERRUPTS:
        end_run(mlflow, run_id, "KILLED")
        raise
    except BaseException:
        end_run(mlflow, run_id, "FAILED")
        raise


MODEL_PATH = "model"  # artifact folder of the child run holding the logged model


def log_best_model(
    run: RunContext, child_run_id: str, folder: Path, tied_with: list[str] | tuple[str, ...] = ()
) -> str:
    """Log an MLflow model folder on its child run as `model/`, tag both runs; return its URI.
    `tied_with`: the activations that cannot be told apart from it, tagged `best_model.tied_with`
    on both runs (a tie shown as a tie)."""
    mlflow = client(run)
    mlflow.log_artifacts(child_run_id, str(folder), MODEL_PATH)
    uri = f"runs:/{child_run_id}/{MODEL_PATH}"
    mlflow.set_tag(run.parent_run_id, "best_model_uri", uri)
    mlflow.set_tag(child_run_id, "best_model", "true")
    if tied_with:
        for run_id in (run.parent_run_id, child_run_id):
            mlflow.set_tag(run_id, TIED_TAG, ", ".join(tied_with))
    return uri


TIED_TAG = "best_model.tied_with"


def log_choices(run: RunContext, record: dict) -> None:
    """The learning rate chosen per activation and the seeds' state, as the parent's
    `choices.json` (rewritten after each round of seeds)."""
    client(run).log_dict(run.parent_run_id, record, "choices.json")


def tag_grid_size(run: RunContext, trained: int) -> None:
    """`grid_size` = the networks trained in all, seeds added while it was close included."""
    client(run).set_tag(run.parent_run_id, "grid_size", str(trained))


def log_report(run: RunContext, report_dir: str) -> None:
    """The report folder as the parent run's `report/` artifacts."""
    db = sqlite_path(run.tracking_uri)
    where = db.resolve().parent / "mlruns" if db is not None else Path(report_dir)
    hint = (
        "free space where MLflow keeps artifacts (mlruns/ beside mlflow.db for the default "
        f"store); the report itself is complete in {report_dir}"
    )
    with explaining_full_disk(where, "the report's MLflow artifacts", hint):
        client(run).log_artifacts(run.parent_run_id, report_dir, artifact_path="report")


def describe_parent(run: RunContext, description: str, metrics: dict[str, float]) -> None:
    """The parent run as the MLflow UI shows it: `description` (Markdown: the answer) and summary
    `metrics` (e.g. the best test accuracy per model, how many networks ended how)."""
    client(run).log_batch(
        run.parent_run_id,
        metrics=[_metric(k, v) for k, v in metrics.items()],
        tags=[RunTag(DESCRIPTION_TAG, description)],
    )
