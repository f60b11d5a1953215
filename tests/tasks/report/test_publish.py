"""The comparison report: table order, Markdown content, files on disk, figures that never crash."""

import base64
import io
import math
import os
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from tasks.core.files import NoSpaceError
from tasks.report.figures import plot_training_loss
from tasks.report.html import render_html
from tasks.report.markdown import render_markdown
from tasks.report.publish import write_report
from tasks.report.ranking import SUMMARY_COLUMNS, correct_by_run, summarize_activations
from tasks.report.table import TABLE_COLUMNS, results_table
from tests.conftest import fill

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = math.nan


N_TEST = 1000  # test images of the fake results


def result(model, activation, accuracy, *, seed=0, epochs=3, diverged_epoch=None):
    """A result dict as the training + evaluation tasks return it. A scored network's test
    predictions are right on the first round(accuracy * N_TEST) images (labels all 0)."""
    if diverged_epoch is None:
        costs = [2.0 / (e + 1) for e in range(epochs)]
        status, final, loss = "ok", costs[-1], 0.3
    else:
        costs = [1.5 / (e + 1) for e in range(diverged_epoch)] + [NAN]
        status, final, loss, accuracy = "diverged", NAN, NAN, NAN
    return {
        "model": model,
        "activation": activation,
        "seed": seed,
        "status": status,
        "test_accuracy": accuracy,
        "test_loss": loss,
        "final_cost": final,
        "seconds_per_epoch": 1.25,
        "epochs_run": len(costs),
        "diverged_epoch": diverged_epoch,
        "learning_rate": 0.5,
        "run_id": f"run-{model}-{activation}-{seed}",
        "init": "zeros" if model == "tutorial" else "he_normal",
        "costs": costs,
        **(_predictions(accuracy) if diverged_epoch is None and accuracy is not None else {}),
    }


def _predictions(accuracy: float) -> dict:
    right = np.arange(N_TEST) < round(accuracy * N_TEST)
    return {
        "test_predictions": np.where(right, 0, 1).astype(np.uint8),
        "test_labels": np.zeros(N_TEST, np.uint8),
    }


def _markdown(results, context) -> str:
    """The report page as write_report renders it: compared on the recorded test predictions."""
    table = results_table(results)
    summary = summarize_activations(table, context["baseline"], correct_by_run(results))
    return render_markdown(table, context, summary)


@pytest.fixture
def results():
    # deliberately shuffled: mlp before tutorial, diverged mixed in
    return [
        result("mlp", "relu", 0.97),
        result("tutorial", "relu", None, diverged_epoch=0),
        result("mlp", "gelu", 0.98),
        result("tutorial", "sigmoid", 0.62),
        result("tutorial", "tanh", None, diverged_epoch=1),
        result("tutorial", "softmax", 0.91),
        result("mlp", "tanh", 0.96),
    ]


@pytest.fixture
def context():
    return {
        "dataset": "mnist",
        "epochs": 3,
        "batch_size": 100,
        "learning_rate": 0.5,
        "lr_decay": 0.05,
        "hidden_units": [128],
        "baseline": "relu",
        "parent_run_id": "parent123",
    }


@pytest.fixture(autouse=True)
def no_open_figures():
    yield
    assert plt.get_fignums() == [], "a figure was left open"
    plt.close("all")


# --- table -----------------------------------------------------------------------------------


def test_table_has_one_row_per_result_and_the_documented_columns(results):
    table = results_table(results)
    assert list(table.columns) == TABLE_COLUMNS
    assert "costs" not in table.columns
    assert len(table) == len(results)
    assert set(table["run_id"]) == {r["run_id"] for r in results}


def test_table_orders_tutorial_first_ok_before_diverged_best_accuracy_first(results):
    table = results_table(results)
    assert list(zip(table["model"], table["activation"], strict=True)) == [
        ("tutorial", "softmax"),
        ("tutorial", "sigmoid"),
        ("tutorial", "relu"),  # diverged, NaN accuracy: after every ok run
        ("tutorial", "tanh"),
        ("mlp", "gelu"),
        ("mlp", "relu"),
        ("mlp", "tanh"),
    ]
    assert table.loc[table["status"] == "diverged", "diverged_epoch"].tolist() == [0, 1]


def test_table_puts_unknown_models_after_mlp_alphabetically():
    rows = [result("zeta", "relu", 0.5), result("mlp", "relu", 0.5), result("alpha", "relu", 0.5)]
    assert results_table(rows)["model"].tolist() == ["mlp", "alpha", "zeta"]


def test_table_names_the_result_that_lacks_a_key():
    bad = result("mlp", "relu", 0.9)
    del bad["run_id"]
    with pytest.raises(ValueError, match=r"mlp/relu/seed=0 lacks run_id"):
        results_table([bad])


# --- markdown --------------------------------------------------------------------------------


def test_markdown_names_the_best_activation_per_model(results, context):
    md = _markdown(results, context)
    assert md.startswith("# Which activation? mnist\n")
    # one seed: McNemar on the test predictions; softmax is right on every image sigmoid gets
    # right and on 290 more, so it beats it beyond doubt
    assert (
        "- **tutorial**: best is `softmax` on mnist with the tutorial's single layer, "
        "activation(x·W + b): test accuracy 0.9100 (1 seed, so no spread); every other "
        "activation is worse (McNemar, 1 seed, Holm-corrected): `sigmoid` by 29.0 points "
        "(p < 0.001); `relu` (the baseline) diverged; 2 of 4 runs diverged (`relu`, `tanh`).\n"
    ) in md
    # gelu against relu: 10 images only gelu got right, none the other way: p = 2 / 2^10
    assert (
        "- **mlp**: best is `gelu` on mnist with one hidden layer of 128 units: test accuracy "
        "0.9800 (1 seed, so no spread); every other activation is worse (McNemar, 1 seed, "
        "Holm-corrected): `relu` by 1.0 points (p = 0.002), `tanh` by 2.0 points (p < 0.001).\n"
    ) in md
    for activation in ("softmax", "sigmoid", "relu", "tanh", "gelu"):
        assert f"| {activation}" in md


def test_markdown_without_test_predictions_says_one_seed_cannot_be_tested(results, context):
    for r in results:
        r.pop("test_predictions", None)
    md = render_markdown(results_table(results), context)
    assert (
        "- **mlp**: `gelu` has the highest mean on mnist with one hidden layer of 128 units: "
        "test accuracy 0.9800 (1 seed, so no spread), but nothing tests it against `relu`, "
        "`tanh` (one seed and no test predictions recorded: run more seeds).\n"
    ) in md


def test_markdown_says_when_every_run_of_a_model_diverged(context):
    rows = [result("tutorial", "relu", None, diverged_epoch=0), result("mlp", "gelu", 0.9)]
    md = render_markdown(results_table(rows), context)
    assert "**tutorial**: every run diverged" in md
    assert "**mlp**: best is `gelu`" in md


def test_markdown_averages_seeds_for_the_best_activation(context):
    rows = [
        result("mlp", "relu", 0.99, seed=0),
        result("mlp", "relu", 0.81, seed=1),
        result("mlp", "gelu", 0.95, seed=0),
        result("mlp", "gelu", 0.93, seed=1),
    ]
    md = _markdown(rows, context)
    # gelu: mean 0.94, s = 0.02 / sqrt 2 = 0.0141, 95 % CI 0.94 ± 12.706 * 0.01 -> clipped at 1;
    # paired with relu: differences -0.04, +0.12, t = 0.5, p = 1 - (2 / pi) atan(0.5) = 0.70.
    # Image by image gelu is ahead (pooled McNemar p < 0.001), but seed 0 orders them the other
    # way round: they tie.
    assert (
        "**mlp**: `gelu` and `relu` tie for best on mnist with one hidden layer of 128 units: "
        "test accuracy 0.9000–0.9400; the seeds disagree on `relu`: behind overall (p < 0.001) "
        "but ahead on seed 0."
    ) in md
    ranking = md[md.index("## Ranking") : md.index("## How sure")]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in ranking.splitlines()
        if line.startswith("| ") and not line.startswith("| rank")
    ]
    gelu, relu = rows
    assert gelu[2] == "gelu" and gelu[5:7] == ["0.9400 ± 0.0141", "0.8129–1.0000"]
    # verdict, vs best, p vs best: by the test it rests on, the t-test beside it
    assert relu[7:9] == ["tie", "-0.0400"]
    p_value, test, t_test = re.fullmatch(r"(\S+) \((McNemar)\); t-test (\S+)", relu[9]).groups()
    assert float(p_value) < 0.001 and t_test == "0.705"


def test_markdown_explains_divergence_only_when_a_tutorial_run_diverged(results, context):
    with_divergence = render_markdown(results_table(results), context)
    assert "## Why tutorial runs diverge" in with_divergence
    assert "log(0)" in with_divergence

    ok_only = [r for r in results if r["status"] == "ok"]
    assert "Why tutorial runs diverge" not in render_markdown(results_table(ok_only), context)

    mlp_diverged = ok_only + [result("mlp", "selu", None, diverged_epoch=2)]
    md = render_markdown(results_table(mlp_diverged), context)
    assert "Why tutorial runs diverge" not in md


def test_markdown_shows_nan_as_a_dash_with_four_decimals(results, context):
    md = render_markdown(results_table(results), context)
    relu_row = next(line for line in md.splitlines() if line.startswith("| tutorial | relu"))
    cells = [c.strip() for c in relu_row.strip("|").split("|")]
    # model, activation, seed, test accuracy, final cost, status, seconds/epoch
    assert cells == ["tutorial", "relu", "0", "zeros", "—", "—", "diverged", "1.2500"]
    every_run = md[md.index("## Results: every run") :]
    table_lines = [line for line in every_run.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(results)  # header, rule, one row per run
    assert not any("nan" in line.lower() for line in table_lines)
    assert "0.9800" in md


def test_markdown_embeds_figures_and_ends_with_the_settings(results, context):
    figures = [
        ("Training loss", "Training Loss — tutorial", "training_loss_tutorial.png"),
        ("Training loss", "Training Loss — mlp", "training_loss_mlp.png"),
        ("Test accuracy", "Test accuracy with 95 % CI", "test_accuracy.png"),
    ]
    md = render_markdown(results_table(results), {**context, "figures": figures})
    assert md.count("## Training loss") == 1 and md.count("## Test accuracy") == 1
    assert "![Training Loss — tutorial](training_loss_tutorial.png)" in md
    assert md.index("training_loss_mlp.png") < md.index("## Test accuracy")
    settings = md[md.index("## Settings") :]
    for text in ("mnist", "100", "0.5", "0.05", "parent123"):
        assert text in settings


# --- files -----------------------------------------------------------------------------------


def test_write_report_writes_markdown_csv_and_one_png_per_model(tmp_path, results, context):
    report = write_report(results, tmp_path / "reports", "parent123", context)
    folder = report.folder

    assert folder == tmp_path / "reports" / "parent123"
    assert Path(report) == folder and f"{report}" == str(folder)  # a report reads as its folder
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "**mlp**: best is `gelu`" in md
    assert "![Training Loss — mlp](training_loss_mlp.png)" in md
    assert "figures" not in context  # the caller's dict is left alone

    csv = pd.read_csv(folder / "results.csv")
    assert list(csv.columns) == TABLE_COLUMNS
    assert len(csv) == len(results)
    assert csv["test_accuracy"].max() == pytest.approx(0.98)

    for model in ("tutorial", "mlp"):
        png = folder / f"training_loss_{model}.png"
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert png.stat().st_size > 10_000


def test_write_report_points_latest_at_the_newest_report(tmp_path, results, context):
    root = tmp_path / "reports"
    first = write_report(results, root, "first", context).folder
    second = write_report(results[:2], root, "second", context).folder

    latest = root / "latest"
    assert latest.is_symlink()
    assert not os.path.isabs(os.readlink(latest))  # relative: survives moving the folder
    assert latest.resolve() == second.resolve()
    assert first.is_dir()


def test_write_report_replaces_a_report_with_the_same_id(tmp_path, results, context):
    root = tmp_path / "reports"
    folder = write_report(results, root, "parent123", context).folder
    (folder / "stale.txt").write_text("from an older attempt")

    again = write_report(results[:2], root, "parent123", context).folder

    assert again == folder
    assert not (again / "stale.txt").exists()
    assert len(pd.read_csv(again / "results.csv")) == 2
    assert sorted(p.name for p in root.iterdir()) == ["latest", "parent123"]  # no temp folders


def test_write_report_leaves_no_partial_folder_when_it_fails(tmp_path, results, context):
    root = tmp_path / "reports"
    broken = results + [{"model": "mlp"}]  # lacks every other key
    with pytest.raises(ValueError):
        write_report(broken, root, "parent123", context)
    assert list(root.iterdir()) == []


def test_a_report_that_runs_out_of_space_keeps_the_previous_one_and_says_what_to_free(
    small_disk, results, context
):
    root = small_disk / "reports"
    folder = write_report(results, root, "parent123", context).folder
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    fill(small_disk)

    with pytest.raises(NoSpaceError) as err:
        write_report(results[:2], root, "parent123", context)  # a rebuild of the same report
    with pytest.raises(NoSpaceError):
        write_report(results, root, "another", context)

    message = str(err.value)
    assert f"no space left writing the report to {folder} (" in message
    assert f"remove old report folders under {root}" in message
    assert "the previous report, if any, was left as it was" in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in root.iterdir()) == ["latest", "parent123"]  # no temporary
    assert (root / "latest").resolve() == folder.resolve()


def test_write_report_rejects_a_run_id_that_is_not_a_folder_name(tmp_path, results, context):
    with pytest.raises(ValueError, match="plain folder name"):
        write_report(results, tmp_path, "../elsewhere", context)


def test_html_report_is_one_file_with_every_figure_embedded(tmp_path, results, context):
    seeded = [dict(r, seed=s, run_id=f"{r['run_id']}-{s}") for r in results for s in (0, 1)]
    for r in seeded:
        r["val_accuracies"] = [0.5 + 0.1 * e for e in range(r["epochs_run"])]
    best_tutorial = next(r for r in seeded if r["activation"] == "softmax" and r["seed"] == 0)
    best_tutorial["confusion_matrix"] = [[8, 2], [1, 9]]
    folder = write_report(seeded, tmp_path, "parent123", context).folder
    page = (folder / "report.html").read_text(encoding="utf-8")
    markdown = (folder / "report.md").read_text(encoding="utf-8")

    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    # nothing to fetch: no URL at all, every image inline, no linked style sheet or script
    assert not re.search(r"https?://", page)
    assert "<link" not in page and "<script" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(sources) == len(figures) >= 6  # loss x2, val accuracy x2, test bars, confusion
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE
    assert "confusion_matrix_tutorial.png" in figures  # the best tutorial run had a matrix
    assert "confusion_matrix_mlp.png" not in figures  # the best mlp run had none
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == len({(r["model"], r["activation"]) for r in results})


def test_html_refuses_a_figure_that_is_not_in_the_folder(tmp_path):
    with pytest.raises(ValueError, match="not a .png/.svg file"):
        render_html("![x](https://example.org/x.png)", tmp_path, "t")


# --- figures ---------------------------------------------------------------------------------


def _legend_labels(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_plot_labels_axes_and_marks_diverged_runs(results):
    fig = plot_training_loss(results, "tutorial")
    try:
        ax = fig.axes[0]
        assert fig.get_suptitle() == "Training Loss — tutorial"
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("Epoch #", "Loss")
        assert _legend_labels(fig) == [
            "relu (diverged at epoch 0)",
            "sigmoid",
            "tanh (diverged at epoch 1)",
            "softmax",
        ]
        assert ax.get_yscale() == "linear"  # costs 0.67..2.0: within a decade
    finally:
        plt.close(fig)


def test_plot_adds_the_seed_to_labels_only_with_several_seeds():
    rows = [result("mlp", "relu", 0.9, seed=0), result("mlp", "relu", 0.9, seed=1)]
    fig = plot_training_loss(rows, "mlp")
    try:
        assert _legend_labels(fig) == ["relu (seed=0)", "relu (seed=1)"]
    finally:
        plt.close(fig)


def test_plot_survives_every_run_diverging_and_single_epoch_runs(tmp_path):
    all_diverged = [
        result("tutorial", "relu", None, diverged_epoch=0),
        result("tutorial", "tanh", None, diverged_epoch=0),
    ]
    one_epoch = [result("mlp", "relu", 0.8, epochs=1), result("mlp", "gelu", 0.85, epochs=1)]
    for rows, model in ((all_diverged, "tutorial"), (one_epoch, "mlp")):
        fig = plot_training_loss(rows, model)
        try:
            fig.savefig(tmp_path / f"{model}.png")
            assert len(_legend_labels(fig)) == 2
        finally:
            plt.close(fig)
    assert (tmp_path / "tutorial.png").stat().st_size > 0


def test_plot_uses_a_log_scale_when_costs_span_more_than_a_decade():
    rows = [result("tutorial", "softmax", 0.8), result("tutorial", "sigmoid", 0.3)]
    rows[1]["costs"] = [0.02, 0.004, 0.001]  # the tutorial's sigmoid: cost near zero
    fig = plot_training_loss(rows, "tutorial")
    try:
        assert fig.axes[0].get_yscale() == "log"
    finally:
        plt.close(fig)


def test_plot_uses_a_linear_scale_when_a_cost_is_not_positive():
    rows = [result("tutorial", "linear", 0.1)]
    rows[0]["costs"] = [1.0, 0.0, -0.5]
    fig = plot_training_loss(rows, "tutorial")
    try:
        assert fig.axes[0].get_yscale() == "linear"
    finally:
        plt.close(fig)


def test_degenerate_runs_rank_after_sound_ones_and_are_explained(context):
    sigmoid = result("tutorial", "sigmoid", 0.95)  # high accuracy, but its cost is not honest
    sigmoid["status"] = "degenerate"
    sigmoid["reason"] = "validation accuracy 0.310 is below 0.998"
    rows = [
        result("tutorial", "relu", None, diverged_epoch=0),
        sigmoid,
        result("tutorial", "softmax", 0.84),
    ]
    table = results_table(rows)
    assert list(table["activation"]) == ["softmax", "sigmoid", "relu"]
    assert list(table["reason"]) == ["", "validation accuracy 0.310 is below 0.998", ""]
    markdown = render_markdown(table, context)
    assert "**tutorial**: best is `softmax` on mnist" in markdown
    assert "test accuracy 0.8400 (1 seed, so no spread)" in markdown
    assert "1 degenerate, ranked after the sound ones (`sigmoid`)" in markdown
    assert "## Degenerate runs" in markdown
    assert "`tutorial/sigmoid/seed=0`: validation accuracy 0.310 is below 0.998." in markdown


def test_no_degenerate_section_without_degenerate_runs(results, context):
    assert "Degenerate" not in render_markdown(results_table(results), context)


def test_zero_initialised_hidden_layers_are_called_out(context):
    rows = [result("mlp", "relu", 0.1), result("tutorial", "softmax", 0.84)]
    rows[0]["init"] = "zeros"
    markdown = render_markdown(results_table(rows), context)
    assert "## Zero-initialised hidden layers" in markdown
    assert "`mlp` started from all-zero weights" in markdown
    rows[0]["init"] = "he_normal"  # the tutorial's zero W is its design, not a symmetry problem
    assert "Zero-initialised" not in render_markdown(results_table(rows), context)


def test_ranking_table_lists_every_activation_unsound_last_with_their_reason(results, context):
    results[1]["reason"] = "the cost stopped being finite (nan) in epoch 0"  # tutorial/relu
    md = render_markdown(results_table(results), context)
    ranking = md[md.index("## Ranking") : md.index("## How sure")]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in ranking.splitlines()
        if line.startswith("| ") and not line.startswith("| rank")
    ]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("1", "tutorial", "softmax", "ok"),
        ("2", "tutorial", "sigmoid", "ok"),
        ("3", "tutorial", "relu", "diverged"),
        ("4", "tutorial", "tanh", "diverged"),
        ("1", "mlp", "gelu", "ok"),
        ("2", "mlp", "relu", "ok"),
        ("3", "mlp", "tanh", "ok"),
    ]
    relu = rows[2]
    assert relu[4] == "0/1" and relu[5] == "—"
    assert relu[-1] == (
        "diverged on seed 0 of 1: the cost stopped being finite (nan) in epoch 0; the baseline"
    )
    assert rows[0][-1] == "the baseline `relu` has no sound run"
    assert rows[3][-1] == "diverged on seed 0 of 1"  # no baseline note on an unsound row
    assert rows[5][-1] == "the baseline"


# --- Prefect artifacts and the MLflow parent run's summary --------------------------------------


def test_the_prefect_page_carries_its_figures_inline_and_small(tmp_path, results, context):
    from PIL import Image

    from tasks.report.publish import ARTIFACT_FIGURE_WIDTH, artifact_markdown

    for r in results:
        r["val_accuracies"] = [0.5] * r["epochs_run"]
    folder = write_report(results, tmp_path, "parent123", context).folder
    page = artifact_markdown(folder)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (folder / "report.md").read_text())
    inline = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([^)]+)\)", page)
    assert len(inline) == len(linked) >= 5 and ".png)" not in page  # no relative link left
    for data in inline:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.load()
            assert image.width <= ARTIFACT_FIGURE_WIDTH
    assert len(page.encode()) < 60_000 * len(inline)  # tens of KB per figure, not hundreds


def _tables(markdown: str) -> list[list[list[str]]]:
    """The pipe tables of `markdown`, as rows of cells (the rule line left out)."""
    tables, rows = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            tables.append([rows[0], *rows[2:]])
            rows = []
    return tables


def test_the_prefect_page_fits_its_tables(tmp_path, results, context):
    from tasks.report.publish import (
        _CELL_PADDING_PIXELS,
        _CHAR_PIXELS,
        ARTIFACT_CELL_CHARS,
        ARTIFACT_TABLE_PIXELS,
        artifact_markdown,
    )

    seeded = [dict(r, seed=s, run_id=f"{r['run_id']}-{s}") for r in results for s in (0, 1)]
    second = {"relu": 0.95, "gelu": 0.975, "tanh": 0.93}  # mlp's seed 1: p-values to show
    for r in seeded:
        if r["seed"] == 1 and r["model"] == "mlp":
            r["test_accuracy"] = second[r["activation"]]
    folder = write_report(seeded, tmp_path, "parent123", context).folder
    page = artifact_markdown(folder)
    report = (folder / "report.md").read_text(encoding="utf-8")

    for table in _tables(page):
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        pixels = sum(w * _CHAR_PIXELS + _CELL_PADDING_PIXELS for w in widths)
        assert pixels <= ARTIFACT_TABLE_PIXELS, table[0]
        assert all(len(cell) <= ARTIFACT_CELL_CHARS for row in table[1:] for cell in row)
    # the ranking, split in parts that all lead with rank, model, activation; no column lost
    ranking = _tables(page[page.index("## Ranking") : page.index("## How sure")])
    assert len(ranking) >= 2 and all(t[0][:3] == ["rank", "model", "activation"] for t in ranking)
    (original,) = _tables(report[report.index("## Ranking") : report.index("## How sure")])
    assert {c for t in ranking for c in t[0]} == set(original[0])
    # a long note is numbered under its table, once however many rows share it
    notes = re.findall(r"^(\d+)\. (.*)$", page[page.index("## Ranking") :], re.M)
    texts = [text for _, text in notes]
    assert notes and len(texts) == len(set(texts))
    for number, text in notes:
        assert f"[{number}]" in page and text in report


def test_dash_only_columns_are_left_out_of_the_prefect_page(tmp_path, results, context):
    from tasks.report.publish import artifact_markdown

    page = artifact_markdown(write_report(results, tmp_path, "parent123", context).folder)
    ranking = _tables(page[page.index("## Ranking") : page.index("## How sure")])
    headers = {cell for table in ranking for cell in table[0]}
    assert "95% CI" not in headers and "p-value" not in headers  # one seed: dashes only
    assert {"rank", "activation", "test accuracy (mean ± std)", "vs baseline"} <= headers


def test_the_table_artifact_has_the_columns_a_reader_compares(results, context):
    from tasks.report.publish import ARTIFACT_TABLE_COLUMNS, _table_artifact
    from tasks.report.ranking import summarize_activations

    rows = _table_artifact(summarize_activations(results_table(results), "relu"))
    assert list(rows[0]) == list(ARTIFACT_TABLE_COLUMNS.values())
    assert "note" not in rows[0] and "reason" not in rows[0]
    gelu = next(r for r in rows if r["activation"] == "gelu")
    assert gelu["test accuracy"] == 0.98 and gelu["p-value"] is None


def test_the_parent_run_summary_is_the_answer_and_counts(tmp_path, results, context):
    from tasks.report.publish import parent_description, parent_summary

    report = write_report(results, tmp_path, "parent123", context)
    best, counts = parent_summary(report.folder)
    assert best == {"tutorial": 0.91, "mlp": 0.98}
    assert counts == {"ok": 5, "diverged": 2, "degenerate": 0}
    text = parent_description(report, counts, len(results))
    assert text.startswith("- **tutorial**: best is `softmax`")
    assert "\n- **mlp**: best is `gelu`" in text
    assert "7 networks: 5 ok, 2 diverged, 0 degenerate." in text
    assert "`report/report.html`" in text


def test_rebuilding_an_old_report_leaves_latest_on_the_newest_run(tmp_path):
    """`actlab report OLD_ID` writes the old report, but reports/latest stays on the newer run;
    rebuilding the newest run (or with no latest at all) points latest at it."""
    from mlflow.tracking import MlflowClient

    from tasks.report.publish import rebuild_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "mlruns").as_uri())
    old = client.create_run(experiment, start_time=1_000).info.run_id
    new = client.create_run(experiment, start_time=2_000).info.run_id
    root = tmp_path / "reports"
    latest = root / "latest"

    rebuild_report(uri, old, root)
    assert latest.resolve().name == old  # no latest yet: the only report
    rebuild_report(uri, new, root)
    assert latest.resolve().name == new
    again = rebuild_report(uri, old, root)
    assert again.folder.is_dir() and latest.resolve().name == new  # not moved back
    rebuild_report(uri, new, root)
    assert latest.resolve().name == new
    shutil.rmtree(root / new)  # latest dangles: the old report may take it
    rebuild_report(uri, old, root)
    assert latest.resolve().name == old
