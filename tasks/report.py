"""The comparison report: which activation did best, per model, and how training went.

From the small result dicts the training and evaluation tasks return (one per child MLflow run) this
module builds a table, one "Training Loss" figure per model (the tutorial's plot, all activations on
one axis) and a Markdown page, and writes them as `reports/<parent run id>/` with `reports/latest`
pointing at the newest. The folder is assembled under a temporary name and renamed into place at the
end, so an interrupted report never looks complete.
"""

import logging
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede the pyplot import

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from prefect import task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from tasks.config import Config  # noqa: E402
from tasks.logs import run_logger  # noqa: E402
from tasks.paths import report_dir  # noqa: E402
from tasks.tracking import RunContext, log_report  # noqa: E402

logger = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "model",
    "activation",
    "seed",
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
STATUS_ORDER = ("ok", "degenerate", "diverged")  # ranked in this order; only `ok` can win
MISSING = "—"  # how NaN reads in the Markdown report
FIGURE_DPI = 100
LATEST = "latest"
# Diverged runs: "x" markers in axes fraction, from just under the top edge downwards.
MARKER_TOP, MARKER_STEP = 0.97, 0.045

# Markdown table: result column -> header a reader sees.
_MD_COLUMNS = {
    "model": "model",
    "activation": "activation",
    "seed": "seed",
    "init": "init",
    "test_accuracy": "test accuracy",
    "final_cost": "final cost",
    "status": "status",
    "seconds_per_epoch": "seconds/epoch",
}
# Hyperparameters listed at the end of the report: context key -> label.
_HYPERPARAMETERS = {
    "dataset": "dataset",
    "epochs": "epochs",
    "batch_size": "batch size",
    "learning_rate": "initial learning rate",
    "lr_decay": "learning-rate decay",
    "schedule": "learning-rate schedule",
    "optimizer": "optimiser",
    "momentum": "momentum",
    "hidden_units": "mlp hidden units",
    "standardize": "standardised inputs",
}

_DIVERGENCE_NOTE = """\
## Why tutorial runs diverge

The tutorial's network is `pred = activation(x·W + b)` trained on the cost
`mean(-sum(y * log(pred)))`. That cost is a cross-entropy only when `pred` is a probability vector,
which is what softmax produces. At the tutorial's zero initialisation ReLU, leaky ReLU, ELU, SELU,
GELU, swish and tanh all output exactly 0, so the very first cost holds `0 · log(0)`, which is NaN
(and any negative output later would have no logarithm at all). Training cannot recover from a
NaN cost.
The activations that survive are not trained on a cross-entropy either. Sigmoid keeps every output
in (0, 1), so the cost stays finite and shrinks towards 0, but ten independent sigmoids are not a
distribution over the classes and a small cost does not mean good accuracy. Softplus is unbounded
above: once the true class's output passes 1 its log is positive, so the cost goes negative and
keeps falling as that output grows.
The `mlp` model avoids all of this: the activation sits in the hidden layer and the output is
softmax cross-entropy on logits."""


def _model_rank(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model), "") if model in MODEL_ORDER else (len(MODEL_ORDER), model)


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _is_finite(value) -> bool:
    return value is not None and math.isfinite(value)


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per trained network, best first within each model.

    Sorted by model (tutorial, mlp, then others alphabetically), then status (ok, degenerate,
    diverged), then
    test accuracy descending (NaN last). The per-epoch costs stay out of the table.
    """
    required = set(TABLE_COLUMNS) - {"diverged_epoch", "reason", "init"}
    for r in results:
        missing = sorted(required - r.keys())
        if missing:
            name = f"{r.get('model', '?')}/{r.get('activation', '?')}/seed={r.get('seed', '?')}"
            raise ValueError(f"result {name} lacks {', '.join(missing)}")

    def order(r: dict) -> tuple:
        acc = _float(r["test_accuracy"])
        acc_key = -acc if not math.isnan(acc) else math.inf
        return (
            _model_rank(r["model"]),
            _status_rank(r["status"]),
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


def _diverged_at(r: dict) -> int:
    """0-based epoch where the cost stopped being finite (else the first non-finite cost)."""
    if r.get("diverged_epoch") is not None:
        return int(r["diverged_epoch"])
    costs = r.get("costs") or []
    bad = [i for i, c in enumerate(costs) if not _is_finite(c)]
    if bad:
        return bad[0]
    return max(int(r.get("epochs_run") or len(costs)) - 1, 0)


def plot_training_loss(results: list[dict], model: str) -> Figure:
    """The tutorial's "Training Loss" plot for every activation (and seed) of one model.

    Non-finite costs are left out; a diverged run gets an "x" at the top of the axis above the epoch
    where it diverged. The y axis is logarithmic when every plotted cost is positive.
    """
    runs = [r for r in results if r["model"] == model]
    activations = list(dict.fromkeys(r["activation"] for r in runs))  # first-seen order
    several_seeds = len({r["seed"] for r in runs}) > 1
    seeds = sorted({r["seed"] for r in runs})
    palette = plt.get_cmap("tab10" if len(activations) <= 10 else "tab20")
    colours = {a: palette(i % palette.N) for i, a in enumerate(activations)}
    styles = ["-", "--", ":", "-."]
    max_epochs = max((len(r.get("costs") or []) for r in runs), default=0)
    point_marker = "o" if max_epochs <= 30 else None  # single epochs stay visible

    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction: 1.0 is the top edge
    markers_at: dict[int, int] = {}  # epoch -> diverged markers already drawn there
    plotted: list[float] = []
    handles: list[Line2D] = []
    for r in sorted(runs, key=lambda r: (activations.index(r["activation"]), r["seed"])):
        colour = colours[r["activation"]]
        style = styles[seeds.index(r["seed"]) % len(styles)]
        costs = r.get("costs") or []
        points = [(i, float(c)) for i, c in enumerate(costs) if _is_finite(c)]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=colour, linestyle=style, marker=point_marker, markersize=3)
            plotted.extend(ys)
        diverged = r["status"] == "diverged"
        if diverged:
            epoch = _diverged_at(r)
            stacked = markers_at.get(epoch, 0)  # runs diverging at the same epoch form a column
            markers_at[epoch] = stacked + 1
            ax.plot(
                [epoch],
                [MARKER_TOP - MARKER_STEP * stacked],
                transform=top,
                marker="x",
                markersize=10,
                markeredgewidth=2,
                color=colour,
                clip_on=False,
                linestyle="none",
            )
        label = r["activation"]
        if several_seeds:
            label += f" (seed={r['seed']})"
        if diverged:
            label += " (diverged)"
        handles.append(
            Line2D(
                [],
                [],
                color=colour,
                label=label,
                linestyle=style if points else "none",
                marker="x" if diverged else point_marker,
                markersize=8 if diverged else 3,
            )
        )

    # A log axis only where costs span more than a decade (tutorial sigmoid's ~0.001 beside
    # softmax's ~0.5); over a narrow range its tick labels read worse than a linear axis.
    if plotted and min(plotted) > 0 and max(plotted) > 10 * min(plotted):
        ax.set_yscale("log")
    if not plotted:
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            "no finite cost to plot: every run diverged" if runs else "no runs",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    last = max([max_epochs - 1] + [_diverged_at(r) for r in runs if r["status"] == "diverged"])
    ax.set_xlim(-0.5, max(last, 0) + 0.5)
    if last < 20:
        ax.set_xticks(range(max(last, 0) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch #")
    ax.set_ylabel("Loss")
    ax.set_title(f"Training Loss — {model}")
    ax.grid(True, which="major", alpha=0.3)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _named(rows: pd.DataFrame) -> str:
    return ", ".join(f"`{a}`" for a in dict.fromkeys(rows["activation"]))


def _best_sentence(model: str, rows: pd.DataFrame) -> str:
    ok = rows[(rows["status"] == "ok") & rows["test_accuracy"].notna()]
    diverged = rows[rows["status"] == "diverged"]
    degenerate = rows[rows["status"] == "degenerate"]
    if ok.empty:
        if len(diverged) == len(rows):
            return f"**{model}**: every run diverged ({len(rows)} of {len(rows)})."
        return f"**{model}**: no run finished soundly with a test accuracy."
    by_activation = ok.groupby("activation", sort=False)["test_accuracy"].agg(["mean", "count"])
    best = by_activation["mean"].idxmax()
    accuracy, n = by_activation.loc[best, "mean"], int(by_activation.loc[best, "count"])
    text = f"**{model}**: best is `{best}` with "
    if rows["seed"].nunique() > 1:
        text += f"mean test accuracy {accuracy:.4f} over {n} seeds"
    else:
        text += f"test accuracy {accuracy:.4f}"
    if not diverged.empty:
        text += f"; {len(diverged)} of {len(rows)} runs diverged ({_named(diverged)})"
    if not degenerate.empty:
        text += f"; {len(degenerate)} degenerate, not ranked ({_named(degenerate)})"
    return text + "."


def _degenerate_section(table: pd.DataFrame) -> list[str]:
    rows = table[table["status"] == "degenerate"]
    if rows.empty:
        return []
    lines = [
        "## Degenerate runs",
        "",
        "These finished with a finite cost, but a cost that cannot be a cross-entropy of "
        "probabilities: a probability output with mean loss L on a set is right on at least "
        "2·e^-L - 1 of it, and these runs' validation accuracy falls short of that (or L < 0). "
        "Their cost fell without the classifier improving, so they are listed after the sound "
        "runs and never named best.",
        "",
    ]
    for r in rows.itertuples():
        lines.append(f"- `{r.model}/{r.activation}/seed={r.seed}`: {r.reason}.")
    return [*lines, ""]


def _symmetry_section(table: pd.DataFrame) -> list[str]:
    rows = table[(table["model"] != "tutorial") & (table["init"] == "zeros")]
    if rows.empty:
        return []
    models = ", ".join(f"`{m}`" for m in dict.fromkeys(rows["model"]))
    return [
        "## Zero-initialised hidden layers",
        "",
        f"{models} started from all-zero weights. Every unit of a hidden layer then computes the "
        "same function and receives the same gradient, so the units can never become different: "
        "the layer behaves as a single unit, whatever its width (and with ReLU-like activations, "
        "whose gradient at 0 is 0, the hidden layer does not learn at all). These runs show the "
        "symmetry problem, not what the activation can do; use `init: auto`.",
        "",
    ]


def _stages_section(stages: dict[str, dict] | None) -> list[str]:
    """Cross-run caching (tasks/cache.py): per stage, cached or ran, and why."""
    if not stages:
        return []
    lines = ["## Data stages", ""]
    for name, stage in stages.items():
        lines.append(f"- {name} {stage['status']}: {stage['reason']}")
    return lines + [""]


def render_markdown(table: pd.DataFrame, context: dict) -> str:
    """The report page: best activation per model, the table, the figures, the settings."""
    dataset = context.get("dataset", "MNIST-format data")
    lines = [f"# Which activation? {dataset}", ""]
    if table.empty:
        lines += ["No networks were trained.", ""]
    models = list(dict.fromkeys(table["model"]))
    for model in models:
        lines.append(f"- {_best_sentence(model, table[table['model'] == model])}")
    if models:
        lines.append("")
        shown = table[list(_MD_COLUMNS)].rename(columns=_MD_COLUMNS)
        shown = shown.astype(object).where(shown.notna(), None)  # None prints as MISSING
        lines += [
            "## Results",
            "",
            shown.to_markdown(index=False, floatfmt=".4f", missingval=MISSING),
            "",
        ]
    tutorial = table[table["model"] == "tutorial"]
    if (tutorial["status"] == "diverged").any():
        lines += [_DIVERGENCE_NOTE, ""]
    lines += _degenerate_section(table)
    lines += _symmetry_section(table)
    figures = context.get("figures") or {}
    if figures:
        lines += ["## Training loss", ""]
        for model, file_name in figures.items():
            lines += [f"![Training Loss — {model}]({file_name})", ""]
    lines += _stages_section(context.get("stages"))
    lines += ["## Settings", ""]
    for key, label in _HYPERPARAMETERS.items():
        if key in context:
            lines.append(f"- {label}: {context[key]}")
    lines.append(f"- parent MLflow run: `{context.get('parent_run_id', MISSING)}`")
    return "\n".join(lines) + "\n"


def _point_latest(report_root: Path, folder: Path) -> None:
    """Atomically make report_root/latest a relative symlink to `folder`."""
    latest = report_root / LATEST
    if latest.exists() and not latest.is_symlink():
        raise FileExistsError(f"{latest} exists and is not a symlink; move it away to keep reports")
    temp_link = report_root / f".{LATEST}.tmp-{uuid.uuid4().hex}"
    os.symlink(os.path.relpath(folder, report_root), temp_link, target_is_directory=True)
    try:
        os.replace(temp_link, latest)
    except OSError:
        temp_link.unlink(missing_ok=True)
        raise


def write_report(results: list[dict], report_root: Path, parent_run_id: str, context: dict) -> Path:
    """Write report.md, results.csv and training_loss_<model>.png to report_root/<parent_run_id>.

    The folder is built under a temporary sibling name and renamed into place (replacing an older
    report of the same id), then report_root/latest is pointed at it. `context` is not modified;
    the figure names are added to the copy the Markdown is rendered from.
    """
    if Path(parent_run_id).name != parent_run_id or parent_run_id in ("", ".", ".."):
        raise ValueError(f"parent_run_id {parent_run_id!r} must be a plain folder name")
    report_root = Path(report_root)
    target = report_dir(report_root, parent_run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    table = results_table(results)

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
        figures: dict[str, str] = {}
        for model in dict.fromkeys(table["model"]):
            file_name = f"training_loss_{model}.png"
            fig = plot_training_loss(results, model)
            try:
                fig.savefig(staging / file_name, dpi=FIGURE_DPI)
            finally:
                plt.close(fig)
            figures[model] = file_name
        markdown = render_markdown(table, {**context, "figures": figures})
        (staging / "report.md").write_text(markdown, encoding="utf-8")
        table.to_csv(staging / "results.csv", index=False)

        old = None
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
            target.rename(old)
        try:
            staging.rename(target)
        except BaseException:
            if old is not None:
                old.rename(target)  # put the previous report back
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _point_latest(report_root, target)
    logger.info("report for %d runs written to %s", len(table), target)
    return target


@task(name="build_report", cache_policy=NO_CACHE)
def build_report(results: list[dict], report_root: Path, parent_run_id: str, context: dict) -> str:
    """Prefect task around write_report; returns the report folder as a string."""
    path = write_report(results, report_root, parent_run_id, context)
    run_logger(__name__).info("comparison report: %s", path / "report.md")
    return str(path)


@task(name="publish_report", cache_policy=NO_CACHE)
def publish_report(report: str, run: RunContext) -> None:
    """Put the report where people look: the parent MLflow run and a Prefect markdown artifact."""
    log_report(run, report)
    markdown = (Path(report) / "report.md").read_text(encoding="utf-8")
    create_markdown_artifact(
        markdown=markdown,
        key="activation-comparison",
        description=f"Comparison report of MLflow parent run {run.parent_run_id}",
    )


def report_context(config: Config, raw: dict, parent_run_id: str) -> dict:
    """What the report says about how its runs were made."""
    return {
        "dataset": raw["name"],
        "epochs": config.train.epochs,
        "batch_size": config.train.batch_size,
        "learning_rate": config.train.learning_rate,
        "lr_decay": config.train.lr_decay,
        "schedule": config.train.schedule,
        "optimizer": config.train.optimizer,
        **({"momentum": config.train.momentum} if config.train.optimizer == "momentum" else {}),
        "hidden_units": list(config.models.mlp.hidden_units),
        "standardize": config.preprocess.standardize,
        "parent_run_id": parent_run_id,
    }
