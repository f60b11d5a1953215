"""Reading a finished (or interrupted) flow run back from MLflow: the report's only source.

The flow's own report and `actlab report RUN_ID` are both built from what MLflow recorded (the
parent run's `config.json` and tags, each child run's params, tags, metric histories and status),
so the two cannot drift apart and a past run can be re-reported without training anything.
"""

import json
import math
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.core.cells import cell_label, varying_axes
from tasks.core.names import DEFAULT_BASELINE
from tasks.core.uris import sqlite_path
from tasks.tracking.listing import PARENT_TAG, SqliteReader, connect_for_reading, run_status
from tasks.tracking.predictions import (
    CONFUSION_FILE,
    PREDICTIONS_FILE,
    decode,
    decode_local,
    local_artifacts,
)
from tasks.tracking.reconcile import START

# What is read back per child is a few kB (a confusion matrix, test predictions): MLflow's
# download progress bar would print one line per child and per read to the terminal.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# Per-epoch series read back for each child run: MLflow metric key -> result key.
HISTORIES = {
    "cost": "costs",
    "val_loss": "val_losses",
    "val_accuracy": "val_accuracies",
    "epoch_seconds": "epoch_seconds",
}
# Per-layer diagnostics (tasks.training.diagnostics): layer<k>.<stat> and output.grad_norm.
DIAGNOSTIC_METRIC = re.compile(r"^(layer[0-9]+\.[a-z_]+|output\.grad_norm)$")
NONFINITE_FIELDS = ("tensor", "epoch", "step", "global_step", "detail")  # tags nonfinite.<field>
_TRAIN_KEYS = ("epochs", "batch_size", "learning_rate", "lr_decay", "schedule", "optimizer")
# Per-class test accuracy: the current name (tasks.tracking.runs.CLASS_METRIC) first, then the
# name runs were logged with before it.
CLASS_PREFIXES = ("z_test_accuracy_class_", "test_accuracy_class_")
STAGES = ("download", "preprocess")  # the cached stages a parent run is tagged with


class RecordError(LookupError):
    """A run id that is not a parent run of this store. The message is for the user."""


def get_parent(mlflow: MlflowClient, run_id: str) -> Run:
    """The parent run `run_id`, or a RecordError saying what the id is instead."""
    try:
        run = mlflow.get_run(run_id)
    except MlflowException:
        raise RecordError(
            f"run {run_id!r} is not in the MLflow store {mlflow.tracking_uri}; "
            "list runs with `actlab runs`, or point tracking.uri at the store that holds it"
        ) from None
    parent_id = run.data.tags.get(PARENT_TAG)
    if parent_id:
        raise RecordError(
            f"run {run_id!r} ({run.info.run_name}) is a child run; "
            f"its comparison is the parent run {parent_id!r}"
        )
    return run


def child_runs(mlflow: MlflowClient, parent: Run) -> list[Run]:
    """Every child run of `parent`, however it ended, in the order they were trained (the grid's
    order). From a SQLite store, read straight from its tables (`sqlite_child_runs`); from any
    other, MLflow's search."""
    runs = sqlite_child_runs(mlflow.tracking_uri, parent)
    if runs is None:
        runs = _searched_child_runs(mlflow, parent)
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_name))


def _searched_child_runs(mlflow: MlflowClient, parent: Run) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = mlflow.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sqlite_child_runs(tracking_uri: str, parent: Run) -> list | None:
    """The child runs of `parent` that MLflow's search would return, read straight from a SQLite
    store by the listing's reader (`SqliteReader.children`: runs shaped like MLflow's, with what
    the report reads); None for any other store. MLflow's search loads each run through its ORM:
    ~25 ms for the default grid's 37, which the seed rounds and the report each paid; ~5 ms."""
    db = sqlite_path(tracking_uri)
    if db is None or not db.is_file():
        return None
    return SqliteReader(db).children(parent)


def metric_history(mlflow: MlflowClient, run_id: str, key: str) -> list[float]:
    """A per-epoch metric in step order (the report's and `actlab reproduce`'s one reading)."""
    points = [(m.step, m.timestamp, m.value) for m in mlflow.get_metric_history(run_id, key)]
    return _in_step_order(points)


HISTORY_REQUESTS = 8  # a tracking server's metric histories asked for at once


def fetched_histories(mlflow: MlflowClient, runs: list[Run]) -> dict[str, dict[str, list[float]]]:
    """The metric histories the report reads of these runs (`HISTORIES` and the per-layer
    diagnostics each logged), {run id: {key: values in step order}}, through MLflow,
    HISTORY_REQUESTS requests at a time. A tracking server answers one history per request:
    about 1,300 for the default grid, 2,500 for a hundred one-epoch mlps, which one after
    another took minutes of a Dask run (`plan_more_seeds` and `build_report` both read them)."""
    wanted = [
        (run.info.run_id, key)
        for run in runs
        for key in [*HISTORIES, *sorted(k for k in run.data.metrics if DIAGNOSTIC_METRIC.match(k))]
    ]
    out: dict[str, dict[str, list[float]]] = {run.info.run_id: {} for run in runs}
    with ThreadPoolExecutor(max_workers=HISTORY_REQUESTS) as pool:
        read = pool.map(lambda pair: metric_history(mlflow, *pair), wanted)
        for (run_id, key), values in zip(wanted, read, strict=True):
            out[run_id][key] = values
    return out


def _in_step_order(points: list[tuple[int, int, float]]) -> list[float]:
    """(step, timestamp, value) points as one value per step, in step order; a step logged
    twice: the latest value."""
    by_step = {step: value for step, _, value in sorted(points, key=lambda p: (p[0], p[1]))}
    return [by_step[s] for s in sorted(by_step)]


def sqlite_histories(tracking_uri: str, run_ids: list[str]) -> dict[str, dict[str, list[float]]]:
    """Every metric history of these runs, {run id: {key: values in step order}}, in one read of
    a SQLite store; {} for any other store (then `metric_history` asks MLflow, one request per
    run and key: about 1,300 for the default grid with its per-layer diagnostics).

    Reads MLflow's `metrics` table directly (`connect_for_reading`), as `tasks.tracking.listing`
    does, with MLflow's own conventions: a NaN is stored as 0 with `is_nan` set. A test compares
    both readings on one store."""
    db = sqlite_path(tracking_uri)
    if db is None or not db.is_file() or not run_ids:
        return {}
    points: dict[str, dict[str, list]] = {run_id: {} for run_id in run_ids}
    con = connect_for_reading(db)
    try:
        for start in range(0, len(run_ids), 500):  # SQLite's limit on bound parameters
            chunk = run_ids[start : start + 500]
            rows = con.execute(
                "SELECT run_uuid, key, step, timestamp, value, is_nan FROM metrics "
                f"WHERE run_uuid IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for run_id, key, step, timestamp, value, is_nan in rows:
                value = math.nan if is_nan else float(value)
                points[run_id].setdefault(key, []).append((int(step), int(timestamp), value))
    finally:
        con.close()
    return {
        run_id: {key: _in_step_order(series) for key, series in by_key.items()}
        for run_id, by_key in points.items()
    }


# MLflow's SQL store keeps an infinite metric as +-sys.float_info.max: read it back as infinite.
_LARGEST = sys.float_info.max


def _unclipped(values: list[float]) -> list[float]:
    return [math.copysign(math.inf, v) if abs(v) >= _LARGEST else v for v in values]


def _hidden_units(params: dict) -> list[int]:
    try:
        return [int(u) for u in json.loads(params.get("hidden_units", "[]"))]
    except (ValueError, TypeError):
        return []


def _nonfinite(tags: dict) -> dict | None:
    """Where a diverged run first stopped being finite, as its tags recorded it, or None."""
    if "nonfinite.tensor" not in tags:
        return None
    found = {f: tags.get(f"nonfinite.{f}", "") for f in NONFINITE_FIELDS}
    for f in ("epoch", "step", "global_step"):
        found[f] = int(found[f]) if found[f].lstrip("-").isdigit() else None
    return found


def result_from_run(mlflow: MlflowClient, run: Run, recorded: dict | None = None) -> dict:
    """One child run as the result dict the report is built from.

    `diagnostics` maps each per-layer metric the run logged (layer1.dead_fraction, ...,
    output.grad_norm) to its per-epoch series; `nonfinite` is where a diverged run first
    stopped being finite (tensor, epoch, step, global_step, detail), or None. `recorded`: the
    run's metric histories already read ({key: values}, `sqlite_histories`), else asked of MLflow.
    """
    run_id = run.info.run_id
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics

    def history(key: str) -> list[float]:
        if recorded is not None:
            return list(recorded.get(key, []))
        return metric_history(mlflow, run_id, key)

    histories = {out: history(key) for key, out in HISTORIES.items()}
    keys = sorted(k for k in metrics if DIAGNOSTIC_METRIC.match(k))
    diagnostics = {key: _unclipped(history(key)) for key in keys}
    costs, seconds = histories["costs"], histories["epoch_seconds"]
    status, reason = run_status(run)
    diverged = tags.get("diverged_epoch")
    prefix = next(  # runs recorded before the z_ prefix: test_accuracy_class_<k>
        (p for p in CLASS_PREFIXES if any(k.startswith(p) for k in metrics)), CLASS_PREFIXES[0]
    )
    n_classes = sum(1 for k in metrics if k.startswith(prefix))
    layers = _layer_sizes(params)
    return {
        "model": params.get("model", tags.get("model", "?")),
        "activation": params.get("activation", tags.get("activation", "?")),
        "seed": int(params.get("seed", tags.get("seed", -1))),
        "learning_rate": _float(params.get("learning_rate")),
        "layer_sizes": layers,
        "depth": len(layers) - 2 if layers else None,
        "init": params.get("init", ""),
        "hidden_units": _hidden_units(params),
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "diverged_epoch": int(diverged) if diverged is not None else None,
        "epochs_run": len(costs),
        "final_cost": costs[-1] if costs else math.nan,
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else math.nan,
        "test_accuracy": metrics.get("test_accuracy", math.nan),
        "test_loss": metrics.get("test_loss", math.nan),
        "class_accuracy": [metrics.get(f"{prefix}{k}", math.nan) for k in range(n_classes)],
        **histories,
        "diagnostics": diagnostics,
        "nonfinite": _nonfinite(tags),
    }


def _float(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _layer_sizes(params: dict[str, str]) -> list[int] | None:
    """The network's layer sizes, input to output, from its `layer_sizes` param (JSON)."""
    try:
        sizes = json.loads(params["layer_sizes"])
    except (KeyError, ValueError):
        return None
    return [int(n) for n in sizes] if isinstance(sizes, list) and len(sizes) >= 2 else None


def _artifact(mlflow: MlflowClient, run: Run, name: str, tmp: str) -> Path | None:
    """A run's artifact file: in place when its artifacts are on this machine (MLflow's download
    copies each through a temporary folder, ~50 ms a file), else downloaded into `tmp`; None
    when it has none."""
    folder = local_artifacts(run.info.artifact_uri or "")
    if folder is not None:
        path = folder / name
        return path if path.is_file() else None
    try:
        return Path(mlflow.download_artifacts(run.info.run_id, name, tmp))
    except (MlflowException, OSError):
        return None


def test_predictions(mlflow: MlflowClient, run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """A child run's (predicted class, true label) per test image, or None if it has none."""
    folder = local_artifacts(run.info.artifact_uri or "")
    if folder is not None:
        return decode_local(folder / PREDICTIONS_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        path = _artifact(mlflow, run, PREDICTIONS_FILE, tmp)
        return decode(path) if path is not None else None


def context_from_parent(mlflow: MlflowClient, parent: Run) -> dict:
    """What the report says about how the runs were made, from the parent's config.json."""
    tags = parent.data.tags
    config = recorded_config(mlflow, parent)
    train = config.get("train", {})
    mlp = config.get("models", {}).get("mlp", {})
    sweep = config.get("sweep", {})
    optimizer = train.get("optimizer")
    context = {
        "dataset": tags.get("dataset.name", "MNIST-format data"),
        **{k: train[k] for k in _TRAIN_KEYS if k in train},
        **({"momentum": train.get("momentum")} if optimizer == "momentum" else {}),
        "hidden_units": list(mlp.get("hidden_units", [])),
        "standardize": config.get("preprocess", {}).get("standardize"),
        # runs recorded before sweep.baseline existed compared with the default
        "baseline": sweep.get("baseline", DEFAULT_BASELINE),
        "learning_rates": sweep.get("learning_rates"),
        "depths": sweep.get("depths"),
        # sweep.seeds as a mapping: seeds were added while the best and the runner-up tied
        "seeds": sweep.get("seeds"),
        "parent_run_id": parent.info.run_id,
        "parent_status": parent.info.status,
        "parent_start_time": parent.info.start_time,  # ms since the epoch
        "experiment_id": parent.info.experiment_id,
    }
    if tags.get("prefect.flow_run_id"):
        context["flow_run_id"] = tags["prefect.flow_run_id"]
    if tags.get("best_model_uri"):
        context["best_model_uri"] = tags["best_model_uri"]
        # the activations that cannot be told apart from the logged one (runs.log_best_model)
        context["best_model_tied_with"] = tags.get("best_model.tied_with", "")
    stages = {
        name: {"status": tags[f"stage.{name}"], "reason": tags.get(f"stage.{name}.reason", "")}
        for name in STAGES
        if f"stage.{name}" in tags
    }
    if stages:
        context["stages"] = stages  # cached or ran, and why (tasks/data/cache.py)
    return context


def started_at(tracking_uri: str, run_id: str) -> int | None:
    """When run `run_id` started (ms since the epoch), or None when this store does not hold it."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        return None
    try:
        return MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.start_time
    except MlflowException:
        return None


def recorded_config(mlflow: MlflowClient, parent: Run) -> dict:
    """The parent's config.json (the resolved config as run); {} when it was never logged or
    cannot be read."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _artifact(mlflow, parent, "config.json", tmp)
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path is not None else {}
        except (OSError, ValueError):
            return {}


def confusion_matrix(mlflow: MlflowClient, run: Run) -> list[list[int]] | None:
    """A child run's logged test confusion matrix, or None if it has none."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _artifact(mlflow, run, CONFUSION_FILE, tmp)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["matrix"] if path else None
        except (OSError, ValueError, KeyError):
            return None


def load_comparison(
    tracking_uri: str, parent_run_id: str, confusion: bool = True, predictions: bool = True
) -> tuple[list[dict], dict]:
    """(results, context) of a parent run, read from MLflow alone; `confusion`: with each child's
    confusion matrix, `predictions`: with its test predictions and labels (`test_predictions`,
    `test_labels`; an artifact download per child each)."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():  # MLflow would create an empty store there
        raise RecordError(f"no MLflow store at {db}; set tracking.uri to the one with the run")
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    parent = get_parent(mlflow, parent_run_id)
    results = []
    children = child_runs(mlflow, parent)
    recorded = sqlite_histories(tracking_uri, [run.info.run_id for run in children])
    if children and not recorded:  # a tracking server: ask it, several histories at a time
        recorded = fetched_histories(mlflow, children)
    for run in children:
        result = result_from_run(mlflow, run, recorded.get(run.info.run_id))
        if confusion:
            result["confusion_matrix"] = confusion_matrix(mlflow, run)
        if predictions and result["status"] in ("ok", "degenerate"):  # the ones scored
            found = test_predictions(mlflow, run)
            if found is not None:
                result["test_predictions"], result["test_labels"] = found
        results.append(result)
    axes = varying_axes(results)  # labels name the swept axes beyond model/activation/seed
    for result in results:
        result["cell"] = cell_label(result, axes)
    return results, context_from_parent(mlflow, parent)


@dataclass(frozen=True)
class StartUp:
    """How long a flow run's command took to reach its first trained epoch, from the store alone:
    the command's process start (the parent's `process.start_time` tag) and the first
    `epoch_seconds` point any child logged (its timestamp is when that epoch ended)."""

    command_started: float  # seconds since the epoch
    first_epoch_ended: float  # seconds since the epoch
    first_epoch_seconds: float  # that epoch's own training time

    @property
    def to_first_epoch(self) -> float:
        """Seconds from the command's start to the first epoch's start: imports, Prefect, the
        data stages, building and compiling the first network."""
        return self.first_epoch_ended - self.first_epoch_seconds - self.command_started


def read_startup(tracking_uri: str, parent_run_id: str) -> StartUp:
    """The start-up of the flow run `parent_run_id` (`make bench`, docs/development.md); a
    RecordError if it recorded no process start or no child epoch."""
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    parent = get_parent(mlflow, parent_run_id)
    started = parent.data.tags.get(START)
    points = [
        point
        for child in child_runs(mlflow, parent)
        for point in mlflow.get_metric_history(child.info.run_id, "epoch_seconds")
    ]
    if not started or not points:
        raise RecordError(
            f"run {parent_run_id!r} recorded no {'process start' if not started else 'epoch'}: "
            "start-up is measured on runs of `actlab run` that trained at least one epoch"
        )
    first = min(points, key=lambda m: m.timestamp)
    return StartUp(datetime.fromisoformat(started).timestamp(), first.timestamp / 1000, first.value)
