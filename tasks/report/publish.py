"""Where the report goes: `reports/<parent run id>/` written whole (assembled under a temporary
name and renamed into place, so an interrupted report never looks complete), `reports/latest`
pointing at the newest, the parent MLflow run's artifacts and the Prefect artifacts.

The flow's report and `actlab report RUN_ID` both come from `rebuild_report`: read back from MLflow
(`tasks.tracking.records`), so the two cannot drift apart.
"""

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pandas as pd
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tasks.core.names import DEFAULT_BASELINE
from tasks.core.paths import report_dir
from tasks.core.uris import run_url, ui_base
from tasks.report import figures
from tasks.report.html import render_html
from tasks.report.markdown import render_markdown
from tasks.report.ranking import (
    SUMMARY_COLUMNS,
    at_chosen_rates,
    best_run,
    correct_by_run,
    group_rows,
    groups,
    learning_rate_table,
    summarize_activations,
)
from tasks.report.stats import CONFIDENCE
from tasks.report.table import depth_of, results_table
from tasks.tracking.records import load_comparison
from tasks.tracking.runs import RunContext, log_report

logger = logging.getLogger(__name__)

LATEST = "latest"


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


def _label(model: str, depth: int | None, several: bool) -> tuple[str, str]:
    """(how a figure names a (model, depth), the suffix of its file name)."""
    if not several or depth is None:
        return model, model
    return f"{model}, depth {depth}", f"{model}_depth{depth}"


def _write_figures(
    results: list[dict], table: pd.DataFrame, summary: pd.DataFrame, folder: Path
) -> list[tuple]:
    """Every figure of the report into `folder`; returns (section, caption, file name) in order.

    Curves and confusion matrices show each activation at its chosen learning rate, one figure
    per (model, depth) (file names carry the depth only when a model has several)."""
    out: list[tuple] = []
    chosen = at_chosen_rates(results, summary)
    pairs = groups(summary)
    depths_of = {m: [d for mm, d in pairs if mm == m] for m, _ in pairs}
    named = [(m, d, *_label(m, d, len(depths_of[m]) > 1)) for m, d in pairs]

    def runs_of(model, depth, label):  # the group's runs, titled with the group's label
        return [
            {**r, "model": label} for r in chosen if (r["model"], depth_of(r)) == (model, depth)
        ]

    for model, depth, label, suffix in named:
        runs = runs_of(model, depth, label)
        file_name = f"training_loss_{suffix}.png"
        if len({r["seed"] for r in runs}) > 1:  # several seeds: the mean with a band
            fig = figures.plot_curve_band(runs, label, "costs", "Loss", "Training Loss")
        else:  # one seed: the tutorial's plot, one line per run
            fig = figures.plot_training_loss(runs, label)
        figures.save(fig, folder / file_name)
        out.append(("Training loss", f"Training Loss — {label}", file_name))
    for model, depth, label, suffix in named:
        runs = runs_of(model, depth, label)
        if not any(r.get("val_accuracies") for r in runs):
            continue
        file_name = f"val_accuracy_{suffix}.png"
        fig = figures.plot_curve_band(
            runs, label, "val_accuracies", "Validation accuracy", "Validation accuracy"
        )
        figures.save(fig, folder / file_name)
        out.append(("Validation accuracy", f"Validation accuracy — {label}", file_name))
    rates = learning_rate_table(table)
    for model, depth, label, suffix in named:
        group = group_rows(rates, model, depth)
        if group["learning_rate"].nunique() < 2:
            continue
        file_name = f"val_accuracy_vs_learning_rate_{suffix}.png"
        title = f"Validation accuracy against the learning rate — {label}"
        figures.save(figures.plot_val_accuracy_vs_rate(group, title), folder / file_name)
        out.append(("Validation accuracy against the learning rate", title, file_name))
    if not summary.empty:
        several = {m for m, ds in depths_of.items() if len(ds) > 1}
        shown = summary.assign(
            model=[
                f"{m} d{int(d)}" if m in several and not pd.isna(d) else m
                for m, d in zip(summary["model"], summary["depth"], strict=True)
            ]
        )
        figures.save(figures.plot_test_accuracy(shown), folder / "test_accuracy.png")
        caption = f"Test accuracy with {CONFIDENCE:.0%} CI"
        out.append(("Test accuracy", caption, "test_accuracy.png"))
        for model in sorted(several, key=list(depths_of).index):
            file_name = f"test_accuracy_vs_depth_{model}.png"
            fig = figures.plot_test_accuracy_vs_depth(summary, model)
            figures.save(fig, folder / file_name)
            caption = f"Test accuracy against depth — {model}"
            out.append(("Test accuracy against depth", caption, file_name))
    for model, depth, label, suffix in named:
        best = best_run(results, summary, model, depth)
        if best is None or not best.get("confusion_matrix"):
            continue
        file_name = f"confusion_matrix_{suffix}.png"
        name = f"{label}/{best['activation']}/seed={best['seed']}"
        fig = figures.plot_confusion_matrix(
            best["confusion_matrix"], f"Best run {name}: test confusion matrix"
        )
        figures.save(fig, folder / file_name)
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
    baseline = context.get("baseline", DEFAULT_BASELINE)
    summary = summarize_activations(table, baseline, correct_by_run(results))

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
        figures = _write_figures(results, table, summary, staging)
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
    base, note = ui_base(run.tracking_uri)
    url = run_url(base, run.experiment_id, run.parent_run_id)
    create_link_artifact(
        link=url,
        link_text=f"MLflow parent run {run.parent_run_id}",
        key=ARTIFACT_KEYS["link"],
        description=f"The comparison's parent run in MLflow{note}",
    )
