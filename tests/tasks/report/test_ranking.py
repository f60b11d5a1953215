"""The ranking and the one-sentence answer, on fake results tables with known statistics."""

import math

import pytest

from tasks.report.ranking import SUMMARY_COLUMNS, describe_model, headline, summarize_activations
from tasks.report.table import results_table
from tests.tasks.report.test_publish import result

CONTEXT = {"dataset": "fashion-mnist", "hidden_units": [128], "baseline": "relu"}


def _runs(model, activation, accuracies):
    return [result(model, activation, a, seed=s) for s, a in enumerate(accuracies)]


@pytest.fixture
def table():
    tanh = _runs("mlp", "tanh", [0.90, 0.91, 0.92])
    tanh[1] = result("mlp", "tanh", None, seed=1, diverged_epoch=1)
    tanh[1]["reason"] = "the cost stopped being finite (nan) in epoch 1"
    selu = _runs("mlp", "selu", [0.95, 0.95, 0.95])
    for r in selu:
        r["status"], r["reason"] = "degenerate", "validation loss -0.2 is negative"
    rows = (
        tanh
        + _runs("mlp", "relu", [0.84, 0.85, 0.85])
        + selu
        + _runs("mlp", "gelu", [0.85, 0.87, 0.86])
        + _runs("tutorial", "softmax", [0.80, 0.81, 0.82])
        + [result("tutorial", "relu", None, seed=s, diverged_epoch=0) for s in range(3)]
    )
    return results_table(rows)


def test_one_row_per_activation_ranked_sound_first_unsound_last_with_reasons(table):
    summary = summarize_activations(table, "relu")
    assert list(summary.columns) == SUMMARY_COLUMNS
    order = list(zip(summary["model"], summary["rank"], summary["activation"], strict=True))
    assert order == [
        ("tutorial", 1, "softmax"),
        ("tutorial", 2, "relu"),
        ("mlp", 1, "gelu"),
        ("mlp", 2, "relu"),
        ("mlp", 3, "selu"),  # degenerate: after every sound one, despite 0.95
        ("mlp", 4, "tanh"),  # one diverged seed of three: last
    ]
    row = summary.set_index(["model", "activation"])
    assert row.loc[("mlp", "tanh"), "status"] == "diverged"
    assert row.loc[("mlp", "tanh"), "reason"] == (
        "diverged on seed 1 of 3: the cost stopped being finite (nan) in epoch 1"
    )
    assert row.loc[("mlp", "selu"), "reason"].startswith("degenerate on seeds 0, 1, 2 of 3")
    assert row.loc[("tutorial", "relu"), "sound"] == 0
    assert math.isnan(row.loc[("tutorial", "relu"), "mean"])


def test_statistics_and_the_paired_test_against_the_baseline(table):
    row = summarize_activations(table, "relu").set_index(["model", "activation"])
    gelu = row.loc[("mlp", "gelu")]
    assert (gelu["seeds"], gelu["sound"]) == (3, 3)
    assert gelu["mean"] == pytest.approx(0.86)
    assert gelu["std"] == pytest.approx(0.01)
    # t(0.975, 2) * 0.01 / sqrt(3) = 0.024841
    assert gelu["ci_low"] == pytest.approx(0.86 - 0.024841, abs=1e-6)
    # gelu - relu = 0.01, 0.02, 0.01 -> t = 4, p = 1 - 4 / sqrt(18) (hand-worked in test_stats)
    assert gelu["vs_baseline"] == pytest.approx(0.013333, abs=1e-6)
    assert gelu["p_value"] == pytest.approx(1 - 4 / math.sqrt(18))
    assert gelu["test"] == "paired t-test"
    # tanh: only seeds 0 and 2 are sound; paired with relu there: 0.06, 0.07
    tanh = row.loc[("mlp", "tanh")]
    assert tanh["sound"] == 2 and tanh["vs_baseline"] == pytest.approx(0.065)
    assert row.loc[("mlp", "relu"), "note"] == "the baseline"
    assert row.loc[("tutorial", "softmax"), "note"] == "the baseline `relu` has no sound run"


def test_headline_names_the_best_its_spread_and_the_baseline(table):
    summary = summarize_activations(table, "relu")
    mlp = headline("mlp", summary[summary["model"] == "mlp"], table, CONTEXT)
    assert mlp == (
        "**mlp**: best is `gelu` on fashion-mnist with one hidden layer of 128 units: "
        "test accuracy 0.8600 ± 0.0100 over 3 seeds (95% CI 0.8352–0.8848); "
        "`relu` (the baseline) is within noise (paired t-test, p = 0.057); "
        "1 of 12 runs diverged (`tanh`); 3 degenerate, ranked after the sound ones (`selu`)."
    )
    tutorial = headline("tutorial", summary[summary["model"] == "tutorial"], table, CONTEXT)
    assert tutorial.startswith("**tutorial**: best is `softmax` on fashion-mnist with the tutorial")
    assert "`relu` (the baseline) diverged; 3 of 6 runs diverged (`relu`)." in tutorial


def test_headline_when_the_baseline_wins_compares_the_runner_up():
    rows = _runs("mlp", "relu", [0.90, 0.91, 0.92, 0.90]) + _runs(
        "mlp", "tanh", [0.80, 0.80, 0.81, 0.81]
    )
    table = results_table(rows)
    summary = summarize_activations(table, "relu")
    text = headline("mlp", summary, table, CONTEXT)
    assert "best is `relu`" in text and "; it is the baseline; " in text
    assert "the runner-up `tanh` is lower by 0.1025 (paired t-test, p < 0.001)" in text


def test_headline_when_the_baseline_was_not_trained_for_the_model():
    table = results_table(_runs("mlp", "gelu", [0.9]) + _runs("tutorial", "softmax", [0.8]))
    summary = summarize_activations(table, "softmax")
    text = headline("mlp", summary[summary["model"] == "mlp"], table, {"baseline": "softmax"})
    assert "`softmax` (the baseline) was not trained for mlp" in text


def test_headline_when_nothing_is_sound():
    table = results_table([result("tutorial", "relu", None, diverged_epoch=0)])
    summary = summarize_activations(table, "relu")
    text = headline("tutorial", summary, table, {"dataset": "mnist"})
    assert text.startswith("**tutorial**: every run diverged (1 of 1)")


def test_model_descriptions():
    assert describe_model("mlp", [128]) == "one hidden layer of 128 units"
    assert describe_model("mlp", [64, 64]) == "two hidden layers of 64 units"
    assert describe_model("mlp", [256, 128]) == "two hidden layers of 256, 128 units"
