"""The comparison report: which activation did best, per model, and how training went.

From one result dict per child MLflow run (read back from MLflow by `tasks.records`, for the flow
and for `actlab report` alike) this module builds the per-run table, the ranked per-activation
summary with statistics over seeds (`tasks.ranking`), the figures, a Markdown page and the same page
as one self-contained HTML file, and writes them as `reports/<parent run id>/` with
`reports/latest` pointing at the newest. The folder is assembled under a temporary name and renamed
into place at the end, so an interrupted report never looks complete.
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
from prefect.artifacts import (  # noqa: E402
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402

from tasks import figures as more_figures  # noqa: E402
from tasks.logs import run_logger  # noqa: E402
from tasks.paths import report_dir  # noqa: E402
from tasks.ranking import SUMMARY_COLUMNS, headline, summarize_activations  # noqa: E402
from tasks.records import load_comparison  # noqa: E402
from tasks.report_html import render_html  # noqa: E402
from tasks.stats import CONFIDENCE, PAIRED_TEST  # noqa: E402
from tasks.tracking import RunContext, log_report, run_url  # noqa: E402

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


_SUMMARY_HEADERS = {
    "rank": "rank",
    "model": "model",
    "activation": "activation",
    "status": "status",
    "sound": "sound seeds",
    "accuracy": "test accuracy (mean ± std)",
    "ci": f"{CONFIDENCE:.0%} CI",
    "vs_baseline": "vs baseline",
    "p_value": "p-value",
    "why": "note",
}


def _fmt(value: float, spec: str = ".4f") -> str:
    return MISSING if value is None or not math.isfinite(value) else format(value, spec)


def _summary_markdown(summary: pd.DataFrame, baseline: str) -> str:
    """The ranking as a Markdown table: numbers formatted, NaN as a dash, the reason last."""
    rows = []
    for r in summary.assign(baseline=baseline).itertuples():
        accuracy = _fmt(r.mean)
        if math.isfinite(r.std):
            accuracy += f" ± {r.std:.4f}"
        ci = f"{_fmt(r.ci_low)}–{_fmt(r.ci_high)}" if math.isfinite(r.ci_low) else MISSING
        diff = _fmt(r.vs_baseline, "+.4f")
        p = _fmt(r.p_value, ".3g")
        # an unsound row's reason says enough; its baseline comparison did not happen anyway
        note = r.note if r.status == "ok" or r.activation == r.baseline else ""
        why = "; ".join(text for text in (r.reason, note) if text)
        rows.append(
            [r.rank, r.model, r.activation, r.status, f"{r.sound}/{r.seeds}", accuracy, ci]
            + [diff, p, why or ""]
        )
    frame = pd.DataFrame(rows, columns=list(_SUMMARY_HEADERS.values()), dtype=object)
    return frame.to_markdown(index=False, disable_numparse=True)


def _statistics_note(context: dict) -> str:
    baseline = context.get("baseline", "relu")
    return (
        "## How sure: statistics over seeds\n\n"
        "Each activation was trained once per seed (the seed sets the initial weights and the "
        "shuffling). Test accuracy is given as the mean ± the sample standard deviation over "
        f"the seeds that trained soundly, with the {CONFIDENCE:.0%} confidence interval of the "
        "mean from Student's t distribution (mean ± t·s/√n, clipped to [0, 1]). Each "
        f"activation is compared with the baseline `{baseline}` (`sweep.baseline`) of the same "
        f"model by a two-sided {PAIRED_TEST} (scipy.stats.ttest_rel) over the seeds both "
        "trained soundly: pairing by seed removes what a seed does to every activation alike. "
        "p < 0.05 counts as a difference beyond noise. With one seed there is no spread and no "
        "test: list more in `sweep.seeds`. Activations that diverged, degenerated or failed on "
        "any seed are ranked last, with the reason."
    )


def render_markdown(table: pd.DataFrame, context: dict, summary: pd.DataFrame | None = None) -> str:
    """The report page: the answer per model, the ranking with statistics, every run, the
    explanations, the figures, the settings."""
    dataset = context.get("dataset", "MNIST-format data")
    if summary is None:
        summary = summarize_activations(table, context.get("baseline", "relu"))
    lines = [f"# Which activation? {dataset}", ""]
    if table.empty:
        lines += ["No networks were trained.", ""]
    models = list(dict.fromkeys(table["model"]))
    for model in models:
        rows = summary[summary["model"] == model]
        lines.append(f"- {headline(model, rows, table, context)}")
    if models:
        lines += [
            "",
            "## Ranking",
            "",
            _summary_markdown(summary, context.get("baseline", "relu")),
            "",
        ]
        lines += [_statistics_note(context), ""]
        shown = table[list(_MD_COLUMNS)].rename(columns=_MD_COLUMNS)
        shown = shown.astype(object).where(shown.notna(), None)  # None prints as MISSING
        lines += [
            "## Results: every run",
            "",
            shown.to_markdown(index=False, floatfmt=".4f", missingval=MISSING),
            "",
        ]
    tutorial = table[table["model"] == "tutorial"]
    if (tutorial["status"] == "diverged").any():
        lines += [_DIVERGENCE_NOTE, ""]
    lines += _degenerate_section(table)
    lines += _symmetry_section(table)
    section = None
    for heading, caption, file_name in context.get("figures") or []:
        if heading != section:
            lines += [f"## {heading}", ""]
            section = heading
        lines += [f"![{caption}]({file_name})", ""]
    lines += _stages_section(context.get("stages"))
    lines += ["## Settings", ""]
    for key, label in _HYPERPARAMETERS.items():
        if key in context:
            lines.append(f"- {label}: {context[key]}")
    lines.append(f"- parent MLflow run: `{context.get('parent_run_id', MISSING)}`")
    if context.get("flow_run_id"):
        lines.append(f"- Prefect flow run: `{context['flow_run_id']}`")
    if context.get("best_model_uri"):
        lines.append(f"- best network as an MLflow model: `{context['best_model_uri']}`")
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


def _save(fig: Figure, path: Path) -> None:
    try:
        fig.savefig(path, dpi=FIGURE_DPI)
    finally:
        plt.close(fig)


def _best_run(results: list[dict], model: str, activation: str) -> dict | None:
    runs = [
        r
        for r in results
        if r["model"] == model and r["activation"] == activation and r["status"] == "ok"
    ]
    runs = [r for r in runs if _is_finite(r.get("test_accuracy"))]
    return max(runs, key=lambda r: (r["test_accuracy"], -r["seed"]), default=None)


def _write_figures(results: list[dict], summary: pd.DataFrame, folder: Path) -> list[tuple]:
    """Every figure of the report into `folder`; returns (section, caption, file name) in order."""
    out: list[tuple] = []
    models = list(dict.fromkeys(summary["model"]))
    for model in models:
        runs = [r for r in results if r["model"] == model]
        file_name = f"training_loss_{model}.png"
        if len({r["seed"] for r in runs}) > 1:  # several seeds: the mean with a band
            fig = more_figures.plot_curve_band(results, model, "costs", "Loss", "Training Loss")
        else:  # one seed: the tutorial's plot, one line per run
            fig = plot_training_loss(results, model)
        _save(fig, folder / file_name)
        out.append(("Training loss", f"Training Loss — {model}", file_name))
    for model in models:
        if not any(r.get("val_accuracies") for r in results if r["model"] == model):
            continue
        file_name = f"val_accuracy_{model}.png"
        fig = more_figures.plot_curve_band(
            results, model, "val_accuracies", "Validation accuracy", "Validation accuracy"
        )
        _save(fig, folder / file_name)
        out.append(("Validation accuracy", f"Validation accuracy — {model}", file_name))
    if not summary.empty:
        _save(more_figures.plot_test_accuracy(summary), folder / "test_accuracy.png")
        out.append(("Test accuracy", "Test accuracy with 95 % CI", "test_accuracy.png"))
    for model in models:
        sound = summary[(summary["model"] == model) & (summary["status"] == "ok")]
        best = _best_run(results, model, sound.iloc[0]["activation"]) if len(sound) else None
        if best is None or not best.get("confusion_matrix"):
            continue
        file_name = f"confusion_matrix_{model}.png"
        name = f"{model}/{best['activation']}/seed={best['seed']}"
        fig = more_figures.plot_confusion_matrix(
            best["confusion_matrix"], f"Best run {name}: test confusion matrix"
        )
        _save(fig, folder / file_name)
        out.append(("Confusion matrix of the best run", f"Confusion matrix — {name}", file_name))
    return out


def write_report(results: list[dict], report_root: Path, parent_run_id: str, context: dict) -> Path:
    """Write report.md, report.html, results.csv, summary.csv and the figures (PNG) to
    report_root/<parent_run_id>.

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
    summary = summarize_activations(table, context.get("baseline", "relu"))

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
        figures = _write_figures(results, summary, staging)
        markdown = render_markdown(table, {**context, "figures": figures}, summary)
        (staging / "report.md").write_text(markdown, encoding="utf-8")
        title = f"Which activation? {context.get('dataset', 'MNIST-format data')}"
        html_page = render_html(markdown, staging, title)
        (staging / "report.html").write_text(html_page, encoding="utf-8")
        table.to_csv(staging / "results.csv", index=False)
        summary.to_csv(staging / "summary.csv", index=False)

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


def rebuild_report(
    tracking_uri: str, parent_run_id: str, report_root: Path, baseline: str | None = None
) -> Path:
    """The report of a parent run from what MLflow recorded alone (no training, no data).

    The flow's own report goes through here too, so a rebuilt report equals the original.
    `baseline` overrides the recorded sweep.baseline (to restyle a past comparison).
    """
    results, context = load_comparison(tracking_uri, parent_run_id)
    if baseline is not None:
        activations = sorted({r["activation"] for r in results})
        if baseline not in activations:
            raise ValueError(
                f"baseline {baseline!r} was not trained in run {parent_run_id}; "
                f"its activations: {', '.join(activations)}"
            )
        context["baseline"] = baseline
    return write_report(results, report_root, parent_run_id, context)


@task(name="build_report", cache_policy=NO_CACHE)
def build_report(run: RunContext, report_root: Path) -> str:
    """Prefect task: the report built from the parent run's MLflow record; returns the folder."""
    path = rebuild_report(run.tracking_uri, run.parent_run_id, report_root)
    run_logger(__name__).info("comparison report: %s", path / "report.html")
    return str(path)


# Prefect artifact keys: stable, so each flow run adds a version of the same three artifacts.
ARTIFACT_KEYS = {
    "markdown": "activation-comparison",
    "table": "activation-comparison-table",
    "link": "activation-comparison-mlflow",
}


def _table_artifact(summary: pd.DataFrame) -> list[dict]:
    """The ranking as JSON-safe rows (NaN -> None) for a Prefect table artifact."""
    rows = summary[SUMMARY_COLUMNS].astype(object).where(summary.notna(), None)
    return [
        {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        for row in rows.to_dict(orient="records")
    ]


@task(name="publish_report", cache_policy=NO_CACHE)
def publish_report(report: str, run: RunContext) -> None:
    """Put the report where people look: the parent MLflow run, and Prefect artifacts (the page,
    the ranking as a table, a link to the MLflow parent run)."""
    log_report(run, report)
    folder = Path(report)
    description = f"Comparison report of MLflow parent run {run.parent_run_id}"
    create_markdown_artifact(
        markdown=(folder / "report.md").read_text(encoding="utf-8"),
        key=ARTIFACT_KEYS["markdown"],
        description=description,
    )
    summary = pd.read_csv(folder / "summary.csv", keep_default_na=False, na_values=[""])
    create_table_artifact(
        table=_table_artifact(summary), key=ARTIFACT_KEYS["table"], description=description
    )
    url, note = run_url(run.tracking_uri, run.experiment_id, run.parent_run_id)
    create_link_artifact(
        link=url,
        link_text=f"MLflow parent run {run.parent_run_id}",
        key=ARTIFACT_KEYS["link"],
        description=f"The comparison's parent run in MLflow{note}",
    )
