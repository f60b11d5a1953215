"""The per-run results table: one row per trained network, best first within each model."""

import math

import pandas as pd

from tasks.core.cells import axis_text, cell_label
from tasks.core.names import status_rank

TABLE_COLUMNS = [
    "model",
    "depth",
    "activation",
    "learning_rate",
    "seed",
    "layer_sizes",  # with model, activation, rate and seed: the run's grid cell (tasks.core.cells)
    "status",
    "val_accuracy",
    "test_accuracy",
    "test_loss",
    "final_cost",
    "seconds_per_epoch",
    "epochs_run",
    "diverged_epoch",
    "reason",
    "init",
    "run_id",
]

MODEL_ORDER = ("tutorial", "mlp")  # the tutorial's network first, then the sound comparison


def _model_rank(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model), "") if model in MODEL_ORDER else (len(MODEL_ORDER), model)


def _float(value) -> float:
    return math.nan if value is None else float(value)


def depth_of(r: dict) -> int | None:
    """Hidden layers of the network: from its layer sizes when known; the tutorial has none."""
    if r.get("depth") is not None:
        return int(r["depth"])
    if r.get("layer_sizes"):
        return len(r["layer_sizes"]) - 2
    return 0 if r["model"] == "tutorial" else None


def _val_accuracy(r: dict) -> float:
    """The validation accuracy the network ended with (its last epoch's); NaN if none."""
    if r.get("val_accuracy") is not None:
        return _float(r["val_accuracy"])
    history = r.get("val_accuracies") or []
    return _float(history[-1]) if history else math.nan


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per trained network, best first within each model.

    Sorted by model (tutorial, mlp, then others alphabetically), then depth (hidden layers), then
    status (ok, degenerate, diverged, ...: tasks.core.names.STATUSES), then test accuracy
    descending (NaN last). The per-epoch costs stay out of the table. `depth` is NA for a network
    whose layers were not recorded, `learning_rate` NaN for one whose rate was not.
    """
    optional = {
        "depth", "learning_rate", "layer_sizes", "val_accuracy", "diverged_epoch", "reason", "init"
    }  # fmt: skip
    required = set(TABLE_COLUMNS) - optional
    for r in results:
        missing = sorted(required - r.keys())
        if missing:
            raise ValueError(f"result {cell_label(r)} lacks {', '.join(missing)}")

    def order(r: dict) -> tuple:
        acc = _float(r["test_accuracy"])
        acc_key = -acc if not math.isnan(acc) else math.inf
        depth = depth_of(r)
        return (
            _model_rank(r["model"]),
            -1 if depth is None else depth,
            status_rank(r["status"]),
            acc_key,
            r["activation"],
            r["seed"],
        )

    rows = sorted(results, key=order)
    table = pd.DataFrame(
        {
            "model": pd.Series([r["model"] for r in rows], dtype=object),
            "depth": pd.Series([depth_of(r) for r in rows], dtype="Int64"),
            "activation": pd.Series([r["activation"] for r in rows], dtype=object),
            "learning_rate": pd.Series([_float(r.get("learning_rate")) for r in rows], dtype=float),
            "seed": pd.Series([int(r["seed"]) for r in rows], dtype="int64"),
            "layer_sizes": pd.Series(
                [axis_text(r["layer_sizes"]) if r.get("layer_sizes") else "" for r in rows],
                dtype=object,
            ),
            "status": pd.Series([r["status"] for r in rows], dtype=object),
            "val_accuracy": pd.Series([_val_accuracy(r) for r in rows], dtype="float64"),
            **{
                col: pd.Series([_float(r[col]) for r in rows], dtype="float64")
                for col in ("test_accuracy", "test_loss", "final_cost", "seconds_per_epoch")
            },
            "epochs_run": pd.Series([int(r["epochs_run"]) for r in rows], dtype="int64"),
            "diverged_epoch": pd.Series([r.get("diverged_epoch") for r in rows], dtype="Int64"),
            "reason": pd.Series([r.get("reason") or "" for r in rows], dtype=object),
            "init": pd.Series([r.get("init") or "" for r in rows], dtype=object),
            "run_id": pd.Series([r["run_id"] for r in rows], dtype=object),
        },
        columns=TABLE_COLUMNS,
    )
    return table
