"""The "why" sentences: stated rules on constructed diagnostics, the report's sections, and the
figures of what was measured inside the networks."""

import math

import matplotlib.pyplot as plt
import pytest

from tasks.report import figures, why
from tasks.report.markdown import render_markdown
from tasks.report.publish import write_report
from tasks.report.ranking import summarize_activations
from tasks.report.table import results_table

NAN = math.nan


def diagnosed(activation, accuracy, *, layers=3, seed=0, epochs=2, status="ok", **per_layer):
    """A result dict with per-layer diagnostics. per_layer: stat -> one value per layer (the same
    every epoch) or a function (layer, epoch) -> value; unnamed stats get healthy values."""
    healthy = {
        "preact_mean": 0.0,
        "preact_std": 1.0,
        "act_mean": 0.3,
        "act_std": 1.0,
        "dead_fraction": 0.0,
        "saturated_fraction": 0.05,
        "grad_norm": 0.5,
        "grad_norm_ratio": 0.8,
    }
    diagnostics = {}
    for stat, default in healthy.items():
        given = per_layer.get(stat, [default] * layers)
        for k in range(1, layers + 1):
            values = [given(k, e) if callable(given) else given[k - 1] for e in range(epochs)]
            diagnostics[f"layer{k}.{stat}"] = values
    diagnostics["output.grad_norm"] = [1.0] * epochs
    return {
        "model": "mlp",
        "activation": activation,
        "seed": seed,
        "status": status,
        "reason": "",
        "test_accuracy": accuracy,
        "test_loss": 0.4,
        "final_cost": 0.4,
        "seconds_per_epoch": 1.0,
        "epochs_run": epochs,
        "diverged_epoch": None,
        "run_id": f"run-{activation}-{seed}",
        "init": {"selu": "lecun_normal", "sigmoid": "glorot_uniform"}.get(activation, "he_normal"),
        "hidden_units": [64] * layers,
        "costs": [1.0] * epochs,
        "val_accuracies": [accuracy] * epochs,
        "class_accuracy": [accuracy] * 10,
        "diagnostics": diagnostics,
        "nonfinite": None,
    }


def _explain(results, **context):
    summary = summarize_activations(results_table(results), "relu")
    return {w.activation: w.sentence for w in why.explain(results, summary, context)}


@pytest.fixture(autouse=True)
def no_open_figures():
    yield
    assert plt.get_fignums() == [], "a figure was left open"


def test_deep_sigmoid_gets_vanishing_gradients_and_chance_relu_wins_without_a_sentence():
    ratios = [0.00025, 0.003, 0.05, 0.3, 0.6, 0.8]
    results = [
        diagnosed("relu", 0.85, layers=6),
        diagnosed("sigmoid", 0.10, layers=6, grad_norm_ratio=ratios),
    ]
    sentences = _explain(results)
    assert set(sentences) == {"sigmoid"}  # the best gets none
    assert sentences["sigmoid"] == (
        "`sigmoid` (mlp, six hidden layers of 64 units; test accuracy 0.100 against 0.850 for "
        "`relu`): the gradient reaching layer 1 is 1/4,000 of the output layer's after the "
        "first epoch (vanishing gradients), and test accuracy stayed at chance (0.100, 10 "
        "classes)."
    )
    relu_says = why.findings([results[0]])
    assert not any("vanishing" in f for f in relu_says)


def test_the_vanishing_rule_reads_the_first_epoch_and_its_threshold():
    def ratio(value):  # below the threshold in the first epoch only
        return lambda k, e: value if e == 0 else 0.5

    assert why.findings([diagnosed("tanh", 0.8, grad_norm_ratio=ratio(0.0099))])
    assert not why.findings([diagnosed("tanh", 0.8, grad_norm_ratio=ratio(0.0101))])
    exploding = why.findings([diagnosed("tanh", 0.8, grad_norm_ratio=[150.0, 1, 1])])
    assert exploding == [
        "the gradient at layer 1 is 150× the output layer's after the first epoch "
        "(exploding gradients)"
    ]


def test_dead_and_saturated_units_are_named_with_their_layer_after_the_last_epoch():
    def dead(k, e):  # layer 2 dies in the last epoch
        return 0.96 if (k, e) == (2, 1) else 0.0

    found = why.findings([diagnosed("relu", 0.35, dead_fraction=dead)])
    assert found == [
        "96% of layer 2's units are dead after the last epoch (no gradient on any probe image)"
    ]
    found = why.findings([diagnosed("tanh", 0.6, saturated_fraction=[0.2, 0.49, 0.7])])
    assert found == ["70% of layer 3's units are saturated after the last epoch"]
    assert not why.findings([diagnosed("tanh", 0.6, saturated_fraction=[0.2, 0.49, 0.3])])


def test_selu_off_its_fixed_point_is_named_with_what_it_needs():
    held = why.findings([diagnosed("selu", 0.85, act_std=[1.18, 1.25, 1.33])])
    assert held == []
    lost = why.findings([diagnosed("selu", 0.8, act_std=[0.60, 0.92, 1.25])], standardize=False)
    assert lost == [
        "its activations' std runs from 0.60 (layer 1) to 1.25 (layer 3) after the last epoch, "
        "away from SELU's fixed point 1: self-normalisation needs LeCun init and standardised "
        "inputs (here: lecun_normal, inputs not standardised)"
    ]
    collapsed = why.findings([diagnosed("selu", 0.1, layers=1, act_std=[0.0012])])
    assert collapsed[0].startswith("its activations' std is 0.001 at layer 1 after the last")
    # the rule is SELU's alone: another activation's std is not held to 1
    assert why.findings([diagnosed("elu", 0.8, act_std=[0.2, 3.0, 5.0])]) == []


def test_several_seeds_use_the_median_layer_by_layer():
    runs = [
        diagnosed("sigmoid", 0.1, seed=s, grad_norm_ratio=[r, 0.5, 0.5])
        for s, r in enumerate([0.001, 0.002, 0.5])
    ]
    assert "1/500 of the output layer's" in why.findings(runs)[0]  # median of the three


def test_no_rule_fired_says_so_with_the_measured_values():
    results = [diagnosed("relu", 0.86), diagnosed("gelu", 0.85, dead_fraction=[0.02, 0.1, 0.0])]
    sentence = _explain(results)["gelu"]
    assert "no diagnostic rule fired (smallest gradient ratio 0.8 (layer 1)" in sentence
    assert "at most 10% of a layer dead and 5% saturated" in sentence


def test_failed_runs_say_where_they_stopped_being_finite():
    ok = diagnosed("relu", 0.85)
    broken = diagnosed("linear", NAN, status="diverged")
    broken.update(diverged_epoch=1, final_cost=NAN, test_loss=NAN)
    broken["nonfinite"] = {
        "tensor": "layer2.preact (x·W + b)",
        "epoch": 1,
        "step": 13,
        "global_step": 563,
        "detail": "+inf in 40 of 6,400 values",
    }
    tutorial = dict(diagnosed("relu", NAN, status="diverged"), model="tutorial", diagnostics={})
    tutorial["reason"] = "the cost stopped being finite (nan) in epoch 0"
    softmax = dict(diagnosed("softmax", 0.84), model="tutorial", diagnostics={})
    sigmoid = dict(diagnosed("sigmoid", 0.8), model="tutorial", diagnostics={})
    sentences = _explain([ok, broken, tutorial, softmax, sigmoid])
    assert sentences["linear"] == (
        "`linear` (mlp, three hidden layers of 64 units; diverged): seed 0 diverged: the first "
        "non-finite value was layer2.preact (x·W + b) at step 13 of epoch 1 (+inf in 40 of 6,400 "
        "values)."
    )
    tutorial_sentences = [w for w in why.explain(
        [tutorial, softmax, sigmoid],
        summarize_activations(results_table([tutorial, softmax, sigmoid]), "relu"), {},
    )]  # fmt: skip
    text = {w.activation: w.sentence for w in tutorial_sentences}
    assert "seed 0 diverged: the cost stopped being finite (nan) in epoch 0" in text["relu"]
    assert "the tutorial model has no hidden layer" in text["sigmoid"]
    assert "softmax" not in text  # the tutorial's best


def test_the_report_states_the_rules_and_draws_what_was_measured(tmp_path):
    results = [
        diagnosed("relu", 0.85, layers=6),
        diagnosed("sigmoid", 0.10, layers=6, grad_norm_ratio=[0.0003, 0.003, 0.05, 0.3, 0.6, 1]),
        diagnosed("selu", 0.84, layers=6, act_std=[1.1, 1.2, 1.2, 1.25, 1.3, 1.3]),
    ]
    context = {"dataset": "fashion-mnist", "baseline": "relu", "hidden_units": [64] * 6}
    folder = write_report(results, tmp_path, "parent1", context).folder
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "## Why activations lost or failed" in markdown
    assert "- `sigmoid` (mlp, six hidden layers of 64 units" in markdown
    assert "(vanishing gradients)" in markdown
    # the method: every threshold stated
    method = markdown.split("## Inside the networks: what was measured, and the rules")[1]
    for stated in ("below 0.01 (1/100)", "above 100×", "at least 50%", "below 5%", "90%"):
        assert stated in method, stated
    assert "outside 0.67–1.5" in method
    for name in ("gradient_norms_mlp.png", "unit_fractions_mlp.png", "activation_std_mlp.png"):
        assert (folder / name).stat().st_size > 1000
        assert f"]({name})" in markdown


def test_the_gradient_figure_is_logarithmic_and_the_std_figure_draws_selus_fixed_point():
    results = [
        diagnosed("relu", 0.85, layers=4),
        diagnosed("sigmoid", 0.1, layers=4, grad_norm=[1e-4, 1e-3, 1e-2, 1e-1]),
    ]
    fig = figures.plot_gradient_norms(results, "mlp")
    axes = fig.axes[:2]
    assert [ax.get_yscale() for ax in axes] == ["log", "log"]
    sigmoid = next(line for line in axes[0].lines if line.get_label() == "sigmoid")
    assert list(sigmoid.get_xdata()) == [1, 2, 3, 4, 5]  # four hidden layers, then the output
    assert list(sigmoid.get_ydata()) == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["1", "2", "3", "4", "out"]

    fig = figures.plot_activation_std(results, "mlp")
    for ax in fig.axes[:2]:
        fixed = [line for line in ax.lines if line.get_label() == "SELU's fixed point (std 1)"]
        assert len(fixed) == 1 and list(fixed[0].get_ydata()) == [1.0, 1.0]

    exploding = diagnosed("linear", 0.1, layers=4, act_std=[2e3, 3e8, 2e13, 5e15])
    fig = figures.plot_activation_std([*results, exploding], "mlp")
    assert fig.axes[0].get_yscale() == "log"  # the line at 1 stays readable beside 1e15

    fig = figures.plot_unit_fractions(
        [diagnosed("relu", 0.4, layers=2, dead_fraction=lambda k, e: 0.5 * e * k)], "mlp"
    )
    dead = fig.axes[0].lines[0]
    # share of all hidden units: layers of 64 each, 0 then (0.5 + 1.0) / 2 = 0.75
    assert list(dead.get_ydata()) == [0.0, 0.75]


def test_a_report_without_diagnostics_has_no_inside_section():
    results = [
        dict(diagnosed("softmax", 0.84), model="tutorial", diagnostics={}),
    ]
    table = results_table(results)
    markdown = render_markdown(table, {"dataset": "mnist", "why": []})
    assert "Why activations lost or failed" not in markdown
    assert "Inside the networks" not in markdown
    assert not figures.has_diagnostics(results, "tutorial")
