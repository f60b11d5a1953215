"""Where the report goes: `reports/<parent run id>/` written whole (assembled under a temporary
name and renamed into place, so an interrupted report never looks complete), `reports/latest`
pointing at the newest run's, the parent MLflow run (artifacts, the answer as its description,
summary metrics) and the Prefect artifacts (the page with its figures inline, the ranking, a link
to MLflow, and the grid's progress while it trains).

The flow's report and `actlab report RUN_ID` both come from `rebuild_report`: read back from MLflow
(`tasks.tracking.records`), so the two cannot drift apart.
"""

import base64
import io
import logging
import math
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from uuid import UUID

import pandas as pd
from PIL import Image
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tasks.core.cells import cell_label
from tasks.core.files import explaining_full_disk
from tasks.core.names import DEFAULT_BASELINE, class_names
from tasks.core.paths import report_dir
from tasks.core.results import Report
from tasks.core.uris import run_url, ui_base
from tasks.report import figures
from tasks.report.html import render_html
from tasks.report.markdown import render_markdown
from tasks.report.ranking import (
    answer,
    at_chosen_rates,
    best_activations,
    best_run,
    correct_by_run,
    group_rows,
    groups,
    learning_rate_table,
    summarize_activations,
)
from tasks.report.stats import CONFIDENCE
from tasks.report.table import depth_of, results_table
from tasks.report.why import explain
from tasks.tracking.records import load_comparison, started_at
from tasks.tracking.runs import RunContext, describe_parent, log_best_figure, log_report

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
    results: list[dict],
    table: pd.DataFrame,
    summary: pd.DataFrame,
    folder: Path,
    dataset: str | None = None,
    best_figures: list[tuple[str, str]] | None = None,
) -> list[tuple]:
    """Every figure of the report into `folder`; returns (section, caption, file name) in order,
    and appends (run id, file name) of each best run's confusion matrix to `best_figures`.

    Curves and confusion matrices show each activation at its chosen learning rate, one figure
    per (model, depth) (file names carry the depth only when a model has several); `dataset`
    names the classes on the confusion matrices."""
    out: list[tuple] = []
    best_figures = [] if best_figures is None else best_figures
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
    for model, depth, _shown, suffix in named:
        best = best_run(results, summary, model, depth)
        if best is None or not best.get("confusion_matrix"):
            continue
        file_name = f"confusion_matrix_{suffix}.png"
        if best.get("run_id"):
            best_figures.append((best["run_id"], file_name))
        name = best.get("cell") or cell_label(best)
        matrix = best["confusion_matrix"]
        fig = figures.plot_confusion_matrix(
            matrix,
            f"Best run {name}: test confusion matrix",
            class_names(dataset, len(matrix)),
        )
        figures.save(fig, folder / file_name)
        out.append(("Confusion matrix of the best run", f"Confusion matrix — {name}", file_name))
    out += _inside_figures(results, list(dict.fromkeys(summary["model"])), folder)
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


def _latest_run_id(report_root: Path) -> str | None:
    """The parent run id (folder name) report_root/latest points at; None when it points at no
    report (missing, or dangling)."""
    latest = Path(report_root) / LATEST
    if not latest.is_symlink() or not latest.is_dir():
        return None
    return Path(os.readlink(latest)).name


def write_report(
    results: list[dict],
    report_root: Path,
    parent_run_id: str,
    context: dict,
    point_latest: bool = True,
) -> Report:
    """Write report.md, report.html, results.csv, summary.csv and the figures (PNG) to
    report_root/<parent_run_id>; return it with the answer it opens with.

    The folder is built under a temporary sibling name and renamed into place (replacing an older
    report of the same id), then, if `point_latest`, report_root/latest is pointed at it.
    `context` is not modified; the figure names are added to the copy the Markdown is rendered
    from.
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
        return _write_report_folder(results, report_root, target, context, point_latest)


def _write_report_folder(
    results: list[dict], report_root: Path, target: Path, context: dict, point_latest: bool
) -> Report:
    target.parent.mkdir(parents=True, exist_ok=True)
    table = results_table(results)
    baseline = context.get("baseline", DEFAULT_BASELINE)
    summary = summarize_activations(table, baseline, correct_by_run(results))

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
        best_figures: list[tuple[str, str]] = []
        figures = _write_figures(
            results, table, summary, staging, context.get("dataset"), best_figures
        )
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
    if point_latest:
        _point_latest(report_root, target)
    logger.info("report for %d runs written to %s", len(table), target)
    answered = tuple(answer(summary, table, context))
    return Report(folder=target, answer=answered, best_figures=tuple(best_figures))


def _is_newest(tracking_uri: str, report_root: Path, parent_run_id: str, context: dict) -> bool:
    """Whether report_root/latest should point at this run's report: unless it points at the
    report of a run of this store that started later (`actlab report OLD_ID` leaves it alone)."""
    current = _latest_run_id(report_root)
    if current is None or current == parent_run_id:
        return True
    other = started_at(tracking_uri, current)
    mine = context.get("parent_start_time")
    return other is None or mine is None or other <= mine


def rebuild_report(
    tracking_uri: str, parent_run_id: str, report_root: Path, baseline: str | None = None
) -> Report:
    """The report of a parent run from what MLflow recorded alone (no training, no data).

    The flow's own report goes through here too, so a rebuilt report equals the original.
    `baseline` overrides the recorded sweep.baseline (to restyle a past comparison).
    reports/latest stays on the newest run: it moves here unless it points at a run that started
    after this one.
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
    newest = _is_newest(tracking_uri, report_root, parent_run_id, context)
    return write_report(results, report_root, parent_run_id, context, point_latest=newest)


# Prefect artifact keys: stable, so each flow run adds a version of the same artifacts.
ARTIFACT_KEYS = {
    "markdown": "activation-comparison",
    "table": "activation-comparison-table",
    "link": "activation-comparison-mlflow",
    "progress": "activation-comparison-progress",
}
# The Markdown artifact carries its figures inline (the Prefect UI cannot reach files in the report
# folder), shrunk to this width in pixels and to a 256-colour palette (octree: the legend's colours
# stay apart, where a median-cut palette merged tab10's): 15-25 KB each.
ARTIFACT_FIGURE_WIDTH = 760
ARTIFACT_FIGURE_COLOURS = 256
# Prefect's UI does not wrap table cells, and on a 1440-pixel-wide window its artifact page is
# about 870 pixels wide. In the artifact, a column with nothing but dashes is left out, a cell
# longer than ARTIFACT_CELL_CHARS becomes a numbered note under its table, and a table still wider
# than ARTIFACT_TABLE_PIXELS (estimated from its characters) is split into tables of at most that
# width, each repeating the first KEY_COLUMNS columns (rank, model, activation / model,
# activation, seed) so its rows can still be told apart.
ARTIFACT_CELL_CHARS = 28
ARTIFACT_TABLE_PIXELS = 840
KEY_COLUMNS = 3
_CHAR_PIXELS, _CELL_PADDING_PIXELS = 7.5, 24  # Prefect's table font and cell padding, measured
_EMPTY_CELLS = {"", "—", "-"}
_FIGURE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")
# Ranking columns of the table artifact: what a reader compares, not every computed field.
ARTIFACT_TABLE_COLUMNS = {
    "model": "model",
    "rank": "rank",
    "activation": "activation",
    "status": "status",
    "sound": "sound seeds",
    "mean": "test accuracy",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "vs_baseline": "vs baseline",
    "p_value": "p-value",
}


def _table_artifact(summary: pd.DataFrame) -> list[dict]:
    """The ranking as JSON-safe rows (NaN -> None, numbers to 4 digits) for a Prefect table
    artifact, narrow enough to fit the page; the notes and reasons are in the report."""
    rows = summary[list(ARTIFACT_TABLE_COLUMNS)].rename(columns=ARTIFACT_TABLE_COLUMNS)
    rows = rows.astype(object).where(rows.notna(), None)
    return [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        for row in rows.to_dict(orient="records")
    ]


def _small_png_uri(path: Path) -> str:
    """`path` (a PNG) as a data URI, at most ARTIFACT_FIGURE_WIDTH wide, palette-coded."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > ARTIFACT_FIGURE_WIDTH:
            height = round(image.height * ARTIFACT_FIGURE_WIDTH / image.width)
            image = image.resize((ARTIFACT_FIGURE_WIDTH, height), Image.Resampling.LANCZOS)
        image = image.quantize(ARTIFACT_FIGURE_COLOURS, method=Image.Quantize.FASTOCTREE)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _column_pixels(header: list[str], body: list[list[str]], i: int) -> float:
    chars = max(len(row[i]) for row in [header, *body])
    return chars * _CHAR_PIXELS + _CELL_PADDING_PIXELS


def _split_columns(header: list[str], body: list[list[str]], keep: list[int]) -> list[list[int]]:
    """`keep` in groups that each fit ARTIFACT_TABLE_PIXELS, every group led by the key columns."""
    keys, rest = keep[:KEY_COLUMNS], keep[KEY_COLUMNS:]
    key_width = sum(_column_pixels(header, body, i) for i in keys)
    groups: list[list[int]] = []
    width = math.inf
    for i in rest:
        column = _column_pixels(header, body, i)
        if width + column > ARTIFACT_TABLE_PIXELS and (not groups or len(groups[-1]) > len(keys)):
            groups.append(list(keys))
            width = key_width
        groups[-1].append(i)
        width += column
    return groups or [keys]


def _fit_table(rows: list[str]) -> list[str]:
    """One Markdown pipe table (header, rule, body lines), narrowed for the Prefect UI: columns
    with no value dropped, long cells moved to numbered notes below it, and split in two (or
    more) if it is still too wide."""
    header, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]
    if any(len(r) != len(header) for r in body):
        return rows  # not a table this function understands: leave it as it is
    keep = [i for i in range(len(header)) if any(r[i] not in _EMPTY_CELLS for r in body)]
    notes: dict[str, int] = {}
    for r in body:
        for i in keep:
            if len(r[i]) > ARTIFACT_CELL_CHARS:
                r[i] = f"[{notes.setdefault(r[i], len(notes) + 1)}]"
    out: list[str] = []
    for columns in _split_columns(header, body, keep):
        if out:
            out.append("")
        out.append("| " + " | ".join(header[i] for i in columns) + " |")
        out.append("|" + "|".join("---" for _ in columns) + "|")
        out += ["| " + " | ".join(r[i] for i in columns) + " |" for r in body]
    if notes:
        out.append("")
        out += [f"{n}. {text}" for text, n in notes.items()]
    return out


def _fit_tables(markdown: str) -> str:
    """Every table of `markdown` through _fit_table."""
    out: list[str] = []
    table: list[str] = []
    for line in [*markdown.split("\n"), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out += _fit_table(table) if len(table) > 2 else table
            table = []
        out.append(line)
    return "\n".join(out[:-1])


def artifact_markdown(folder: Path) -> str:
    """report.md for the Prefect UI: each figure inline as a small PNG data URI, each table
    narrowed to fit (see _fit_table)."""
    markdown = _fit_tables((Path(folder) / "report.md").read_text(encoding="utf-8"))

    def inline(match: re.Match) -> str:
        path = Path(folder) / match[2]
        if Path(match[2]).name != match[2] or not path.is_file():
            return match[0]
        return f"![{match[1]}]({_small_png_uri(path)})"

    return _FIGURE_LINK.sub(inline, markdown)


def parent_summary(folder: Path) -> tuple[dict[str, float], dict[str, int]]:
    """(best test accuracy per model, networks per status) from the report's CSV files: the
    summary metrics of the MLflow parent run."""
    summary = pd.read_csv(folder / "summary.csv", keep_default_na=False, na_values=[""])
    table = pd.read_csv(folder / "results.csv", keep_default_na=False, na_values=[""])
    # to 4 decimals, as the report gives it (accuracies computed in float32 read 0.8256000280)
    best = {str(r.model): round(float(r.mean), 4) for r in best_activations(summary).itertuples()}
    counts = {status: int((table["status"] == status).sum()) for status in PARENT_COUNTS}
    return best, counts


PARENT_COUNTS = ("ok", "diverged", "degenerate")  # always logged, 0 included, to compare runs


def parent_description(report: Report, counts: dict[str, int], total: int) -> str:
    """The MLflow parent run's description: the answer, how the networks ended, where the
    report is."""
    ended = ", ".join(f"{n} {status}" for status, n in counts.items())
    others = total - sum(counts.values())
    if others:
        ended += f", {others} failed or unfinished"
    lines = [f"- {sentence}" for sentence in report.answer] or ["No networks were trained."]
    lines += [
        "",
        f"{total} networks: {ended}. The whole report: `report/report.html` in this run's "
        "artifacts.",
    ]
    return "\n".join(lines)


def publish_report(report: Report, run: RunContext) -> None:
    """Put the report where people look: the parent MLflow run (the files, the answer as its
    description, summary metrics), and Prefect artifacts (the page with its figures, the ranking
    as a table, a link to the MLflow parent run)."""
    folder = Path(report)
    log_report(run, str(folder))
    for run_id, file_name in report.best_figures:  # the one per-run figure people open
        log_best_figure(run, run_id, folder / file_name)
    best, counts = parent_summary(folder)
    total = len(pd.read_csv(folder / "results.csv"))
    metrics = {f"best_test_accuracy.{model}": value for model, value in best.items()}
    metrics |= {f"networks_{status}": n for status, n in counts.items()}
    describe_parent(run, parent_description(report, counts, total), metrics)

    description = f"Comparison report of MLflow parent run {run.parent_run_id}"
    create_markdown_artifact(
        markdown=artifact_markdown(folder), key=ARTIFACT_KEYS["markdown"], description=description
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


def start_progress_artifact(total: int) -> UUID:
    """The Prefect progress artifact of this flow run's grid, at 0 %."""
    return create_progress_artifact(
        progress=0.0,
        key=ARTIFACT_KEYS["progress"],
        description=f"0 of {total} networks trained",
    )


def update_progress(artifact_id: UUID, done: int, total: int, line: str) -> None:
    """Move the progress artifact to `done` of `total`; its description is the latest line."""
    update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1), description=line)
