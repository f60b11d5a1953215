"""Browsing past experiments: the recent parent runs as a table, and the MLflow UI URL of one.

Parent runs are the runs of the experiment without an `mlflow.parentRunId` tag; each holds one
flow run's grid (tag `grid_size`) and its children's test accuracy, from which the best activation
per model is read.
"""

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tasks.records import PARENT_TAG

COLUMNS = ["run_id", "start", "grid", "best", "status", "note"]


def recent_parents(mlflow: MlflowClient, experiment_name: str, limit: int = 10) -> list[Run]:
    """The `limit` newest parent runs of the experiment, newest first ([] if it does not exist)."""
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return list(
        mlflow.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` IS NULL",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
    )


def best_activation(mlflow: MlflowClient, parent: Run) -> str:
    """Per model, the activation whose child run reached the highest test accuracy among the
    runs whose status is ok, e.g. "mlp: relu 0.881; tutorial: softmax 0.842"."""
    children = mlflow.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and tags.status = 'ok'",
        max_results=10_000,
    )
    best: dict[str, tuple[float, str]] = {}
    for child in children:
        accuracy = child.data.metrics.get("test_accuracy")
        model = child.data.tags.get("model", "?")
        if accuracy is None:
            continue
        if model not in best or accuracy > best[model][0]:
            best[model] = (accuracy, child.data.tags.get("activation", "?"))
    return "; ".join(f"{m}: {a} {acc:.3f}" for m, (acc, a) in sorted(best.items())) or "—"


def runs_table(mlflow: MlflowClient, experiment_name: str, limit: int = 10) -> pd.DataFrame:
    """One row per recent parent run: id, start (UTC), grid size, best activation, status."""
    rows = []
    for run in recent_parents(mlflow, experiment_name, limit):
        tags = run.data.tags
        note = f"reproduces {tags['reproduced_from']}" if "reproduced_from" in tags else ""
        start = pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")
        rows.append(
            {
                "run_id": run.info.run_id,
                "start": start.strftime("%Y-%m-%d %H:%M:%S"),
                "grid": tags.get("grid_size", "?"),
                "best": best_activation(mlflow, run),
                "status": run.info.status,
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def run_url(base_url: str, run: Run) -> str:
    """The MLflow UI page of `run`, on the UI at `base_url` (e.g. http://127.0.0.1:5000)."""
    base = base_url.rstrip("/")
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def latest_parent_url(mlflow: MlflowClient, experiment_name: str, base_url: str) -> str | None:
    found = recent_parents(mlflow, experiment_name, limit=1)
    return run_url(base_url, found[0]) if found else None
