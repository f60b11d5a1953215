"""The ranking and the one-sentence answer, on fake results tables with known statistics."""

import math

import numpy as np
import pytest

from tasks.report.ranking import (
    SUMMARY_COLUMNS,
    best_overall,
    choose_learning_rates,
    correct_by_run,
    describe_model,
    group_rows,
    groups,
    headline,
    more_seeds,
    separation,
    stopping_note,
    summarize_activations,
)
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


def test_headline_names_the_activations_that_tie_for_best_and_the_test(table):
    summary = summarize_activations(table, "relu")
    mlp = headline("mlp", summary[summary["model"] == "mlp"], table, CONTEXT)
    # gelu 0.86 against relu 0.8467: the paired t-test over 3 seeds gives p = 0.057 (one
    # comparison, so Holm leaves it as it is): they cannot be told apart
    assert mlp == (
        "**mlp**: `gelu` and `relu` tie for best on fashion-mnist with one hidden layer of 128 "
        "units: test accuracy 0.8467–0.8600 (against `gelu`, paired t-test over 3 seeds: "
        "Holm-corrected p ≥ 0.057); 1 of 12 runs diverged (`tanh`); 3 degenerate, ranked after "
        "the sound ones (`selu`)."
    )
    tutorial = headline("tutorial", summary[summary["model"] == "tutorial"], table, CONTEXT)
    assert tutorial.startswith("**tutorial**: best is `softmax` on fashion-mnist with the tutorial")
    assert "test accuracy 0.8100 ± 0.0100 over 3 seeds (95% CI 0.7852–0.8348)" in tutorial
    assert "the only activation that trained soundly" in tutorial
    assert "`relu` (the baseline) diverged; 3 of 6 runs diverged (`relu`)." in tutorial


def test_a_single_winner_is_named_only_when_it_beats_every_other():
    rows = _runs("mlp", "relu", [0.90, 0.91, 0.92, 0.90]) + _runs(
        "mlp", "tanh", [0.80, 0.80, 0.81, 0.81]
    )
    table = results_table(rows)
    summary = summarize_activations(table, "relu")
    text = headline("mlp", summary, table, CONTEXT)
    assert text == (
        "**mlp**: best is `relu` on fashion-mnist with one hidden layer of 128 units: test "
        "accuracy 0.9075 ± 0.0096 over 4 seeds (95% CI 0.8923–0.9227); every other activation "
        "is worse (paired t-test over 4 seeds, Holm-corrected): `tanh` by 10.2 points "
        "(p < 0.001)."
    )
    assert list(summary["verdict"]) == ["best", "worse"]


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


# --- ties on paired test predictions ---------------------------------------------------------

N_IMAGES = 1000


def _predicted(right: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Predictions that are right exactly where `right` says (10 classes)."""
    return np.where(right, labels, (labels + 1) % 10).astype(np.uint8)


def _scored(model, activation, right, *, seed=0, rate=0.1, val=0.9, labels=None):
    labels = np.zeros(N_IMAGES, np.uint8) if labels is None else labels
    r = result(model, activation, float(np.mean(right)), seed=seed)
    r.update(
        learning_rate=rate,
        val_accuracies=[val],
        run_id=f"{r['run_id']}-lr{rate}",
        test_predictions=_predicted(np.asarray(right), labels),
        test_labels=labels,
    )
    return r


def _right(n_right: int, swap: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Right on the first `n_right` images; `swap` = (k, j): wrong on k of those (from the end) and
    right on j others instead, so two such vectors differ on known images."""
    right = np.zeros(N_IMAGES, bool)
    right[:n_right] = True
    k, j = swap
    right[n_right - k : n_right] = False
    right[n_right : n_right + j] = True
    return right


def _summary(rows, baseline="relu"):
    table = results_table(rows)
    return table, summarize_activations(table, baseline, correct_by_run(rows))


def test_with_one_seed_mcnemar_names_ties_and_the_worse_with_how_much():
    rows = [
        _scored("mlp", "relu", _right(870)),
        _scored("mlp", "leaky_relu", _right(870, swap=(3, 2))),  # 3 + 2 discordant: p = 1
        _scored("mlp", "gelu", _right(868)),  # 2 discordant, both for relu: p = 0.5
        _scored("mlp", "sigmoid", _right(840)),  # 30 discordant, all for relu
    ]
    table, summary = _summary(rows)
    mlp = summary.set_index("activation")
    assert list(summary["activation"]) == ["relu", "leaky_relu", "gelu", "sigmoid"]
    assert list(summary["verdict"]) == ["best", "tie", "tie", "worse"]
    assert set(summary["test_vs_best"]) == {"", "McNemar"}
    # Holm over 3: sigmoid's 2^-29 (30 of 30) times 3; gelu's 0.5 times 2; leaky_relu's 1
    assert mlp.loc["sigmoid", "p_vs_best"] == pytest.approx(3 * 2 * 0.5**30)
    assert mlp.loc["gelu", "p_vs_best"] == pytest.approx(1.0)
    assert mlp.loc["sigmoid", "vs_best"] == pytest.approx(-0.03)
    text = headline("mlp", summary, table, CONTEXT)
    assert text == (
        "**mlp**: `relu`, `leaky_relu` and `gelu` tie for best on fashion-mnist with one hidden "
        "layer of 128 units: test accuracy 0.8680–0.8700 (against `relu`, McNemar, 1 seed: "
        "Holm-corrected p = 1); worse: `sigmoid` by 3.0 points (p < 0.001)."
    )
    # with one seed the baseline comparison is McNemar too, uncorrected
    assert mlp.loc["gelu", "test"] == "McNemar" and mlp.loc["gelu", "p_value"] == pytest.approx(0.5)
    assert math.isnan(mlp.loc["gelu", "t_p_vs_best"])  # no t-test with one seed


def test_the_correction_for_several_comparisons_can_turn_a_difference_into_a_tie():
    # each against relu alone: 10 discordant images for relu, 2 against: p = 158/4096 = 0.039
    challengers = {a: _right(870, swap=(10, 2)) for a in ("gelu", "swish", "elu")}
    one = [_scored("mlp", "relu", _right(870)), _scored("mlp", "gelu", challengers["gelu"])]
    _, alone = _summary(one)
    assert list(alone["verdict"]) == ["best", "worse"]
    assert alone["p_vs_best"].iloc[1] == pytest.approx(158 / 4096)
    three = one + [_scored("mlp", a, challengers[a]) for a in ("swish", "elu")]
    _, corrected = _summary(three)
    assert list(corrected["verdict"]) == ["best", "tie", "tie", "tie"]
    assert corrected["p_vs_best"].iloc[1:].tolist() == pytest.approx([3 * 158 / 4096] * 3)


def test_with_several_seeds_mcnemar_is_pooled_and_the_t_test_is_given_beside():
    rows = []
    for seed in range(3):
        rows.append(_scored("mlp", "relu", _right(880 + seed), seed=seed))
        rows.append(_scored("mlp", "tanh", _right(850 + 2 * seed), seed=seed))
    table, summary = _summary(rows)
    tanh = summary.set_index("activation").loc["tanh"]
    assert tanh["verdict"] == "worse" and tanh["test_vs_best"] == "McNemar"
    # relu is right on every image tanh gets right, and on 30, 29, 28 more; pooled, images
    # 850..881 count for relu (right on more seeds: 850 and 851, say, 3 against 2), none
    # against: 32 discordant images, p = 2 * 2^-32
    assert tanh["p_vs_best"] == tanh["mcnemar_p_vs_best"] == pytest.approx(2 * 0.5**32)
    # the t-test over the 3 seeds beside it: differences -0.030, -0.029, -0.028
    assert 0 < tanh["t_p_vs_best"] < 0.001
    assert tanh["reversed_on"] == ""
    text = headline("mlp", summary, table, {})
    assert "(McNemar pooled over 3 seeds, Holm-corrected)" in text


def test_with_several_seeds_a_seed_that_reverses_the_order_makes_a_tie():
    # relu 0.99 then 0.81, gelu 0.95 then 0.93: image by image gelu is ahead overall (pooled
    # McNemar p < 0.001), but seed 0 orders them the other way round: the seeds disagree
    rows = [
        _scored("mlp", "relu", _right(990), seed=0),
        _scored("mlp", "relu", _right(810), seed=1),
        _scored("mlp", "gelu", _right(950), seed=0),
        _scored("mlp", "gelu", _right(930), seed=1),
    ]
    table, summary = _summary(rows)
    relu = summary.set_index("activation").loc["relu"]
    assert relu["p_vs_best"] < 0.001 and relu["reversed_on"] == "0"
    assert relu["verdict"] == "tie"
    # the t-test beside it: differences -0.04, +0.12, t = 0.5, p = 1 - (2 / pi) atan(0.5)
    assert relu["t_p_vs_best"] == pytest.approx(1 - 2 / math.pi * math.atan(0.5))
    assert headline("mlp", summary, table, CONTEXT) == (
        "**mlp**: `gelu` and `relu` tie for best on fashion-mnist with one hidden layer of 128 "
        "units: test accuracy 0.9000–0.9400; the seeds disagree on `relu`: behind overall "
        "(p < 0.001) but ahead on seed 0."
    )
    (s,) = separation(summary, table)
    assert not s.separated and s.reason.endswith(
        "cannot be told apart: the seeds disagree on the order"
    )


def test_without_predictions_the_t_test_over_seeds_decides():
    rows = [result("mlp", "relu", a, seed=s) for s, a in enumerate([0.90, 0.91, 0.92])] + [
        result("mlp", "tanh", a, seed=s) for s, a in enumerate([0.85, 0.87, 0.86])
    ]
    table = results_table(rows)
    tanh = summarize_activations(table, "relu").set_index("activation").loc["tanh"]
    # differences -0.05, -0.04, -0.06: t = -8.66 with 2 degrees of freedom
    assert tanh["test_vs_best"] == "paired t-test" and tanh["verdict"] == "worse"
    assert tanh["p_vs_best"] == pytest.approx(0.01307, abs=1e-5)
    assert math.isnan(tanh["mcnemar_p_vs_best"])


def test_without_recorded_predictions_one_seed_is_untested_not_a_winner():
    table = results_table(_runs("mlp", "relu", [0.91]) + _runs("mlp", "tanh", [0.88]))
    summary = summarize_activations(table, "relu")
    assert list(summary["verdict"]) == ["best", "untested"]
    text = headline("mlp", summary, table, CONTEXT)
    assert text.startswith("**mlp**: `relu` has the highest mean on fashion-mnist")
    assert "nothing tests it against `tanh` (one seed and no test predictions recorded" in text


def test_ties_are_per_depth():
    rows = [
        _scored("mlp", "relu", _right(870)) | {"depth": 1},
        _scored("mlp", "sigmoid", _right(869)) | {"depth": 1},
        _scored("mlp", "relu", _right(850)) | {"depth": 6, "run_id": "relu6"},
        _scored("mlp", "sigmoid", _right(100)) | {"depth": 6, "run_id": "sigmoid6"},
    ]
    table, summary = _summary(rows)
    assert groups(summary) == [("mlp", 1), ("mlp", 6)]
    assert list(zip(summary["depth"], summary["verdict"], strict=True)) == [
        (1, "best"),
        (1, "tie"),
        (6, "best"),
        (6, "worse"),
    ]
    deep = headline("mlp", group_rows(summary, "mlp", 6), table, CONTEXT)
    assert deep.startswith(
        "**mlp**: best is `relu` on fashion-mnist with six hidden layers of 128 units"
    )
    assert "worse (McNemar, 1 seed, Holm-corrected): `sigmoid` by 75.0 points (p < 0.001)" in deep


# --- each activation at its own learning rate -------------------------------------------------


def test_each_activation_gets_the_rate_with_the_best_mean_validation_accuracy():
    val = {("relu", 0.1): [0.90, 0.92], ("relu", 0.3): [0.91, 0.89], ("tanh", 0.1): [0.80, 0.82]}
    val[("tanh", 0.3)] = [0.85, 0.86]
    rows = [
        _scored("mlp", a, _right(800), seed=s, rate=lr, val=v[s]) | {"run_id": f"{a}{lr}{s}"}
        for (a, lr), v in val.items()
        for s in (0, 1)
    ]
    rows[2]["status"] = "diverged"  # relu at 0.3, seed 0: a rate with an unsound run loses
    rates = choose_learning_rates(results_table(rows)).set_index(["activation", "learning_rate"])
    assert rates["chosen"].to_dict() == {
        ("relu", 0.1): True,
        ("relu", 0.3): False,
        ("tanh", 0.1): False,
        ("tanh", 0.3): True,
    }
    assert rates.loc[("tanh", 0.3), "val_accuracy"] == pytest.approx(0.855)
    summary = summarize_activations(results_table(rows), "relu", correct_by_run(rows))
    assert summary.set_index("activation")["learning_rate"].to_dict() == {"relu": 0.1, "tanh": 0.3}


def test_seeds_added_at_the_chosen_rate_only_do_not_change_the_choice():
    rows = [
        _scored("mlp", "relu", _right(800), rate=0.1, val=0.90) | {"run_id": "a"},
        _scored("mlp", "relu", _right(800), rate=0.3, val=0.91) | {"run_id": "b"},
        # a later seed at 0.3 only, with a poor validation accuracy: the choice stays on seed 0
        _scored("mlp", "relu", _right(800), seed=1, rate=0.3, val=0.50) | {"run_id": "c"},
    ]
    rates = choose_learning_rates(results_table(rows))
    assert rates.loc[rates["chosen"], "learning_rate"].tolist() == [0.3]


def test_changing_only_the_test_labels_never_changes_the_chosen_rates():
    rng = np.random.default_rng(0)
    rates = (0.03, 0.1, 0.3)
    activations = ("relu", "tanh", "gelu")
    # fixed networks: their test predictions and validation accuracies never change
    predicted = {(a, lr, s): rng.integers(0, 10, N_IMAGES) for a in activations for lr in rates
                 for s in (0, 1)}  # fmt: skip
    val = {key: float(rng.uniform(0.7, 0.9)) for key in predicted}

    def rows_for(labels):
        rows = []
        for (a, lr, s), pred in predicted.items():
            r = result("mlp", a, float(np.mean(pred == labels)), seed=s)
            r.update(learning_rate=lr, val_accuracies=[val[(a, lr, s)]], run_id=f"{a}{lr}{s}")
            r.update(test_predictions=pred.astype(np.uint8), test_labels=labels)
            rows.append(r)
        return rows

    def chosen(rows):
        summary = summarize_activations(results_table(rows), "relu", correct_by_run(rows))
        return summary.set_index("activation")["learning_rate"].to_dict()

    def best_on_test(rows):
        table = results_table(rows)
        means = table.groupby(["activation", "learning_rate"])["test_accuracy"].mean()
        return {a: float(means[a].idxmax()) for a in activations}

    first = rows_for(rng.integers(0, 10, N_IMAGES, dtype=np.uint8))
    expected = chosen(first)
    disagreed = 0
    for _ in range(20):
        relabelled = rows_for(rng.integers(0, 10, N_IMAGES, dtype=np.uint8))
        assert chosen(relabelled) == expected
        disagreed += best_on_test(relabelled) != expected
    # the test split alone would have chosen other rates: a choice that read it would fail above
    assert disagreed > 0


# --- more seeds while it is close ---------------------------------------------------------------


def test_more_seeds_only_while_the_best_and_runner_up_tie_and_below_the_maximum():
    close = [
        _scored("mlp", "relu", _right(870)),
        _scored("mlp", "leaky_relu", _right(870, swap=(1, 0))),
        _scored("mlp", "sigmoid", _right(700)),
        _scored("tutorial", "softmax", _right(800)),
        result("tutorial", "relu", None, diverged_epoch=0),
    ]
    table, summary = _summary(close)
    found = {(s.model, s.depth): s for s in separation(summary, table)}
    assert not found[("mlp", None)].separated and found[("mlp", None)].seeds == (0,)
    assert "`relu` and the runner-up `leaky_relu` cannot be told apart (McNemar, p = 1)" in (
        found[("mlp", None)].reason
    )
    assert found[("tutorial", 0)].separated  # only softmax trained soundly
    assert found[("tutorial", 0)].reason == "nothing to separate: only `softmax` trained soundly"
    # every sound activation of the tied group, at its chosen rate, on the next seed
    assert more_seeds(summary, table, max_seeds=3) == [
        ("mlp", None, "relu", 0.1, 1),
        ("mlp", None, "leaky_relu", 0.1, 1),
        ("mlp", None, "sigmoid", 0.1, 1),
    ]
    assert more_seeds(summary, table, max_seeds=1) == []
    note = stopping_note(found[("mlp", None)], max_seeds=1, first=1)
    assert note.startswith("stopped at 1 seed, the maximum (`sweep.seeds.max`): `relu` and")
    assert stopping_note(found[("tutorial", 0)], 3, 1) == (
        "1 seed (`sweep.seeds.start`) sufficed: nothing to separate: only `softmax` trained soundly"
    )

    apart = [_scored("mlp", "relu", _right(870)), _scored("mlp", "sigmoid", _right(700))]
    table, summary = _summary(apart)
    (s,) = separation(summary, table)
    assert s.separated and more_seeds(summary, table, max_seeds=5) == []
    assert "are told apart (McNemar, p < 0.001)" in s.reason


def test_the_logged_network_is_the_best_at_its_rate_and_names_its_ties():
    rows = [
        _scored("mlp", "relu", _right(870), rate=0.1, val=0.90) | {"run_id": "relu-0.1"},
        _scored("mlp", "relu", _right(880), rate=0.3, val=0.80) | {"run_id": "relu-0.3"},
        _scored("mlp", "leaky_relu", _right(869), rate=0.1, val=0.90) | {"run_id": "leaky"},
        _scored("mlp", "sigmoid", _right(700), rate=0.1, val=0.90) | {"run_id": "sigmoid"},
    ]
    _, summary = _summary(rows)
    best = best_overall(rows, summary)
    # relu at 0.1, chosen on validation accuracy, although 0.3 did better on the test split
    assert best["run_id"] == "relu-0.1"
    assert best["tied_with"] == ["leaky_relu"]  # a tie is logged as a tie
    alone = [r for r in rows if r["activation"] != "leaky_relu"]
    _, summary = _summary(alone)
    assert best_overall(alone, summary)["tied_with"] == []
