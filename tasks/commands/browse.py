"""Browsing past experiments: the recent parent runs as a table, and the MLflow UI URL of one.

Parent runs are the runs of the experiment without an `mlflow.parentRunId` tag; each holds one
flow run's grid (tag `grid_size`) and its children's test accuracy, from which the best activation
per model is read, by the report's own ranking (`tasks.report.ranking`). Runs are read through
`tasks.tracking.listing`: straight from a SQLite store, so `actlab runs` needs no MLflow import.
"""

import math

import pandas as pd

from tasks.core.cells import cell_fields, cell_label, varying_axes
from tasks.core.names import DEFAULT_BASELINE
from tasks.core.uris import run_url
from tasks.report.ranking import best_activations, summarize_activations
from tasks.report.table import results_table
from tasks.tracking.listing import RunReader, run_status
from tasks.tracking.reconcile import gone_note

COLUMNS = ["run_id", "start", "grid", "best", "status", "note"]


def _row(child) -> dict:
    """A child run as a row of the results table, from what a listing holds (no histories)."""
    tags, params, metrics = child.data.tags, child.data.params, child.data.metrics
    status, reason = run_status(child)
    cell = cell_fields(params, tags)  # tasks.core.cells: what identifies the grid cell
    return {
        "model": cell["model"] or "?",
        "activation": cell["activation"] or "?",
        "seed": int(cell["seed"] if cell["seed"] is not None else 0),
        "learning_rate": cell["learning_rate"],
        "layer_sizes": cell["layer_sizes"],
        "status": status,
        "reason": reason,
        "test_accuracy": metrics.get("test_accuracy", math.nan),
        "test_loss": metrics.get("test_loss", math.nan),
        "final_cost": math.nan,
        "seconds_per_epoch": math.nan,
        "epochs_run": 0,
        "run_id": child.info.run_id,
    }


def best_activation(reader: RunReader, parent) -> str:
    """Per model, the activation the report names best (ranked by mean test accuracy over the
    seeds, only if sound on every seed), e.g. "tutorial: softmax 0.842; mlp: relu 0.881"."""
    children = reader.children(parent)
    if not children:
        return "—"
    baseline = parent.data.params.get("sweep.baseline", DEFAULT_BASELINE)
    summary = summarize_activations(results_table([_row(c) for c in children]), baseline)
    best = best_activations(summary)
    return "; ".join(f"{r.model}: {r.activation} {r.mean:.3f}" for r in best.itertuples()) or "—"


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
