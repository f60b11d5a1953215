"""The per-run results table: one row per trained network, best first within each model."""

import math

import pandas as pd

from tasks.core.cells import axis_text, cell_label
from tasks.core.names import status_rank

TABLE_COLUMNS = [
    "model",
    "activation",
    "seed",
    "learning_rate",  # with model, activation and seed: the run's grid cell (tasks.core.cells)
    "layer_sizes",
    "status",
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


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per trained network, best first within each model.

    Sorted by model (tutorial, mlp, then others alphabetically), then status (ok, degenerate,
    diverged, ...: tasks.core.names.STATUSES), then test accuracy descending (NaN last). The
    per-epoch costs stay out of the table.
    """
    required = set(TABLE_COLUMNS) - {
        "diverged_epoch", "reason", "init", "learning_rate", "layer_sizes"
    }  # fmt: skip
    for r in results:
        missing = sorted(required - r.keys())
        if missing:
            raise ValueError(f"result {cell_label(r)} lacks {', '.join(missing)}")

    def order(r: dict) -> tuple:
        acc = _float(r["test_accuracy"])
        acc_key = -acc if not math.isnan(acc) else math.inf
        return (
            _model_rank(r["model"]),
            status_rank(r["status"]),
            acc_key,
            r["activation"],
            r["seed"],
        )

    rows = sorted(results, key=order)
    table = pd.DataFrame(
        {
            "model": pd.Series([r["model"] for r in rows], dtype=object),
            "activation": pd.Series([r["activation"] for r in rows], dtype=object),
            "seed": pd.Series([int(r["seed"]) for r in rows], dtype="int64"),
            "learning_rate": pd.Series([_float(r.get("learning_rate")) for r in rows]),
            "layer_sizes": pd.Series(
                [axis_text(r["layer_sizes"]) if r.get("layer_sizes") else "" for r in rows],
                dtype=object,
            ),
            "status": pd.Series([r["status"] for r in rows], dtype=object),
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
