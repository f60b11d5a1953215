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

from tasks.core.cells import cell_label
from tasks.core.files import explaining_full_disk
from tasks.core.names import DEFAULT_BASELINE
from tasks.core.paths import report_dir
from tasks.core.uris import run_url, ui_base
from tasks.report import figures
from tasks.report.html import render_html
from tasks.report.markdown import render_markdown
from tasks.report.ranking import SUMMARY_COLUMNS, best_run, summarize_activations
from tasks.report.stats import CONFIDENCE
from tasks.report.table import results_table
from tasks.report.why import explain
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


def _write_figures(results: list[dict], summary: pd.DataFrame, folder: Path) -> list[tuple]:
    """Every figure of the report into `folder`; returns (section, caption, file name) in order."""
    out: list[tuple] = []
    models = list(dict.fromkeys(summary["model"]))
    for model in models:
        runs = [r for r in results if r["model"] == model]
        file_name = f"training_loss_{model}.png"
        if len({r["seed"] for r in runs}) > 1:  # several seeds: the mean with a band
            fig = figures.plot_curve_band(results, model, "costs", "Loss", "Training Loss")
        else:  # one seed: the tutorial's plot, one line per run
            fig = figures.plot_training_loss(results, model)
        figures.save(fig, folder / file_name)
        out.append(("Training loss", f"Training Loss — {model}", file_name))
    for model in models:
        if not any(r.get("val_accuracies") for r in results if r["model"] == model):
            continue
        file_name = f"val_accuracy_{model}.png"
        fig = figures.plot_curve_band(
            results, model, "val_accuracies", "Validation accuracy", "Validation accuracy"
        )
        figures.save(fig, folder / file_name)
        out.append(("Validation accuracy", f"Validation accuracy — {model}", file_name))
    if not summary.empty:
        figures.save(figures.plot_test_accuracy(summary), folder / "test_accuracy.png")
        caption = f"Test accuracy with {CONFIDENCE:.0%} CI"
        out.append(("Test accuracy", caption, "test_accuracy.png"))
    for model in models:
        best = best_run(results, summary, model)
        if best is None or not best.get("confusion_matrix"):
            continue
        file_name = f"confusion_matrix_{model}.png"
        name = best.get("cell") or cell_label(best)
        fig = figures.plot_confusion_matrix(
            best["confusion_matrix"], f"Best run {name}: test confusion matrix"
        )
        figures.save(fig, folder / file_name)
        out.append(("Confusion matrix of the best run", f"Confusion matrix — {name}", file_name))
    out += _inside_figures(results, models, folder)
    return out


# Inside the networks: (file name prefix, figure function, caption), per model with diagnostics.
_INSIDE = (
    ("gradient_norms", figures.plot_gradient_norms, "Weight-gradient norm by layer"),
    ("unit_fractions", figures.plot_unit_fractions, "Dead and saturated units over epochs"),
    ("activation_std", figures.plot_activation_std, "Activation std by hidden layer"),
)


def _inside_figures(results: list[dict], models: list[str], folder: Path) -> list[tuple]:
    out = []
    for model in models:
        if not figures.has_diagnostics(results, model):
            continue
        for prefix, plot, caption in _INSIDE:
            file_name = f"{prefix}_{model}.png"
            figures.save(plot(results, model), folder / file_name)
            out.append(("Inside the networks", f"{caption} — {model}", file_name))
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
    hint = (
        f"remove old report folders under {report_root} (`actlab report RUN_ID` rebuilds any of "
        "them from MLflow) or set report.dir to a larger disk; the previous report, if any, was "
        "left as it was"
    )
    with explaining_full_disk(target, "the report", hint):
        return _write_report_folder(results, report_root, target, context)


def _write_report_folder(
    results: list[dict], report_root: Path, target: Path, context: dict
) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    table = results_table(results)
    summary = summarize_activations(table, context.get("baseline", DEFAULT_BASELINE))

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
        figures = _write_figures(results, summary, staging)
        whys = explain(results, summary, context)
        markdown = render_markdown(table, {**context, "figures": figures, "why": whys}, summary)
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
