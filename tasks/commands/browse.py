"""Browsing past experiments: the recent parent runs as a table, and the MLflow UI URL of one.

Parent runs are the runs of the experiment without an `mlflow.parentRunId` tag; each holds one
flow run's grid (tag `grid_size`) and its children's test accuracy and test predictions, from
which the best activations per model are read by the report's own ranking and tests
(`tasks.report.ranking`), a tie shown as a tie. Runs are read through `tasks.tracking.listing`:
straight from a SQLite store, so `actlab runs` needs no MLflow import.
"""

import math

import pandas as pd

from tasks.core.cells import cell_fields, cell_label, varying_axes
from tasks.core.names import DEFAULT_BASELINE
from tasks.core.uris import run_url
from tasks.report.ranking import UNTESTED, correct_by_run, summarize_activations, tied_best
from tasks.report.table import results_table
from tasks.tracking.listing import RunReader, run_status
from tasks.tracking.reconcile import gone_note

COLUMNS = ["run_id", "start", "grid", "best", "status", "note"]


def _row(child, reader: RunReader) -> dict:
    """A child run as a result (no histories): what the ranking needs, its test predictions
    included when the reader can get them."""
    tags, params, metrics = child.data.tags, child.data.params, child.data.metrics
    status, reason = run_status(child)
    row = {
        "model": params.get("model", tags.get("model", "?")),
        "activation": params.get("activation", tags.get("activation", "?")),
        "seed": int(params.get("seed", tags.get("seed", 0))),
        "learning_rate": _float(params.get("learning_rate")),
        "layer_sizes": _sizes(params.get("layer_sizes")),
        "status": status,
        "reason": reason,
        "val_accuracy": metrics.get("val_accuracy", math.nan),  # the last epoch's
        "test_accuracy": metrics.get("test_accuracy", math.nan),
        "test_loss": metrics.get("test_loss", math.nan),
        "final_cost": math.nan,
        "seconds_per_epoch": math.nan,
        "epochs_run": 0,
        "run_id": child.info.run_id,
    }
    found = reader.test_predictions(child) if status == "ok" else None
    if found is not None:
        row["test_predictions"], row["test_labels"] = found
    return row


def _float(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _sizes(text: str | None) -> list[int] | None:
    import json

    try:
        sizes = json.loads(text) if text else None
    except ValueError:
        return None
    return sizes if isinstance(sizes, list) and len(sizes) >= 2 else None


def best_activation(reader: RunReader, parent) -> str:
    """Per model (and depth, when several were tried), the activations the report names best:
    e.g. "tutorial: softmax 0.842; mlp: relu 0.881", or "mlp: tie relu, leaky_relu 0.866–0.868"
    when they cannot be told apart."""
    children = reader.children(parent)
    if not children:
        return "—"
    baseline = parent.data.params.get("sweep.baseline", DEFAULT_BASELINE)
    rows = [_row(c, reader) for c in children]
    table = results_table(rows)
    best = tied_best(summarize_activations(table, baseline, correct_by_run(rows)))
    several = table.groupby("model")["depth"].nunique() > 1
    parts = []
    for (model, depth), group in best.groupby(["model", "depth"], sort=False, dropna=False):
        name = f"{model} depth {int(depth)}" if several.get(model) and not pd.isna(depth) else model
        low, high = group["mean"].min(), group["mean"].max()
        if len(group) == 1:
            parts.append(f"{name}: {group.iloc[0]['activation']} {high:.3f}")
        elif (group["verdict"] == UNTESTED).any():  # one seed and no predictions recorded
            parts.append(f"{name}: {group.iloc[0]['activation']} {high:.3f} (untested)")
        else:
            span = f"{high:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}–{high:.3f}"
            parts.append(f"{name}: tie {', '.join(group['activation'])} {span}")
    return "; ".join(parts) or "—"


def reproduction_note(reader: RunReader, run) -> str:
    """'reproduces <id>: identical', and which cells when it re-ran part of a grid."""
    tags = run.data.tags
    if "reproduced_from" not in tags:
        return ""
    note = f"reproduces {tags['reproduced_from']}"
    if "grid.full_size" in tags:  # one network or a few of the original's grid
        fields = [cell_fields(c.data.params, c.data.tags) for c in reader.children(run)]
        axes = varying_axes(fields)
        labels = sorted(cell_label(f, axes) for f in fields)
        shown = ", ".join(labels[:2]) + (f" +{len(labels) - 2}" if len(labels) > 2 else "")
        note += f" ({shown})" if shown else ""
    verdict = tags.get("reproduction.verdict")
    return f"{note}: {verdict}" if verdict else note


def runs_table(reader: RunReader, experiment_name: str, limit: int = 10) -> pd.DataFrame:
    """One row per recent parent run: id, start (UTC), grid size, best activation, status."""
    rows = []
    for run in reader.recent_parents(experiment_name, limit):
        tags = run.data.tags
        note = "; ".join(n for n in (reproduction_note(reader, run), gone_note(tags)) if n)
        start = pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")
        rows.append(
            {
                "run_id": run.info.run_id,
                "start": start.strftime("%Y-%m-%d %H:%M:%S"),
                "grid": tags.get("grid_size", "?"),
                "best": best_activation(reader, run),
                "status": run.info.status,
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def latest_parent_url(reader: RunReader, experiment_name: str, base_url: str) -> str | None:
    """The MLflow UI page of the newest parent run, on the UI at `base_url`."""
    found = reader.recent_parents(experiment_name, 1)
    if not found:
        return None
    return run_url(base_url, found[0].info.experiment_id, found[0].info.run_id)
