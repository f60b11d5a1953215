"""Training as plain functions: the tutorial's behaviour, divergence, decay, determinism."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tasks.core.config import ModelsConfig, TrainConfig
from tasks.core.names import ACTIVATIONS
from tasks.training.inputs import one_hot
from tasks.training.loop import fit_network, score_network
from tasks.training.models import build_network, network_from_weights
from tasks.training.optim import apply_update, learning_rate, make_state

MODELS = ModelsConfig()


def _fit(model, activation, data, seed=0, **train):
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 50, "learning_rate": 0.1, **train})
    net = build_network(model, activation, MODELS, seed)
    return net, fit_network(net, *data, cfg, seed)


def test_tutorial_starts_from_zero_weights_and_softmax_learns(blobs):
    net = build_network("tutorial", "softmax", MODELS, seed=0)
    assert all(not np.any(w) for w in net.numpy_weights())
    net, fit = _fit("tutorial", "softmax", blobs)
    assert fit["status"] == "ok" and fit["diverged_epoch"] is None
    assert len(fit["history"]) == 3
    costs = [h["cost"] for h in fit["history"]]
    assert costs[-1] < costs[0]
    assert score_network(net, blobs[2], blobs[3])["accuracy"] > 0.9


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
def test_tutorial_cost_with_non_probability_outputs_diverges_at_once(blobs, activation):
    # relu(0) = 0 -> log(0); tanh/elu outputs <= 0 -> log of a non-positive number: NaN
    _, fit = _fit("tutorial", activation, blobs)
    assert fit["status"] == "diverged"
    assert fit["diverged_epoch"] == 0
    assert len(fit["history"]) == 1 and not math.isfinite(fit["history"][0]["cost"])


@pytest.fixture(scope="module")
def nested():
    """600 train / 200 val images: class k lights rows 3..2k+4, so each class's rows hold the
    rows of every class before it. Telling them apart needs weights that count against a class,
    which only a cost that looks at the other outputs teaches."""
    rng = np.random.default_rng(0)

    def make(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.uniform(0, 0.3, (n, 28, 28)).astype(np.float32)
        for i, k in enumerate(labels):
            x[i, 3 : 2 * k + 5, :] = 1.0
        return x.reshape(n, 784), labels

    return (*make(600), *make(200))


def test_tutorial_sigmoid_cost_falls_while_accuracy_stays_poor(nested):
    # The tutorial's cost only looks at the true class's output, and a sigmoid can push every
    # output towards 1: the cost nears zero while the argmax picks the class at random.
    net, fit = _fit("tutorial", "sigmoid", nested, epochs=5)
    assert fit["history"][-1]["cost"] < 0.05  # near zero: the cost rewards every output -> 1
    assert score_network(net, nested[2], nested[3])["accuracy"] < 0.3  # 10 classes: chance 0.1
    assert fit["status"] == "degenerate" and "below" in fit["reason"]
    # the same data, settings and cost with softmax outputs: every image right
    softmax, fit = _fit("tutorial", "softmax", nested, epochs=5)
    assert fit["status"] == "ok"
    assert score_network(softmax, nested[2], nested[3])["accuracy"] > 0.95


def test_learning_rate_decays_per_epoch_and_is_recorded(blobs):
    _, fit = _fit("tutorial", "softmax", blobs, epochs=4, learning_rate=0.2, lr_decay=0.5)
    assert [h["learning_rate"] for h in fit["history"]] == pytest.approx([0.2, 0.1, 0.05, 0.025])


def test_every_epoch_records_cost_validation_rate_and_time(blobs):
    records = []
    _, fit = _fit("mlp", "relu", blobs, epochs=2)
    net = build_network("mlp", "relu", MODELS, 0)
    fit_network(net, *blobs, TrainConfig(epochs=2, batch_size=50), 0, on_epoch=records.append)
    assert [r["epoch"] for r in records] == [0, 1]
    for r in records:
        assert set(r) == {
            "epoch",
            "cost",
            "val_loss",
            "val_accuracy",
            "learning_rate",
            "epoch_seconds",
            "diagnostics",  # train.diagnostics is on by default
        }
        assert 0 <= r["val_accuracy"] <= 1 and r["epoch_seconds"] > 0
        assert {"layer1.dead_fraction", "output.grad_norm"} <= set(r["diagnostics"])
    # without diagnostics (or without a hidden layer) the record has the six keys alone
    quiet = []
    fit_network(
        build_network("mlp", "relu", MODELS, 0), *blobs,
        TrainConfig(epochs=1, batch_size=50, diagnostics=False), 0, on_epoch=quiet.append,
    )  # fmt: skip
    assert "diagnostics" not in quiet[0] and len(quiet[0]) == 6


def test_mlp_uses_the_matched_initialiser(blobs):
    relu = build_network("mlp", "relu", MODELS, seed=0)
    tanh = build_network("mlp", "tanh", MODELS, seed=0)
    selu = build_network("mlp", "selu", MODELS, seed=0)
    assert (relu.init, tanh.init, selu.init) == ("he_normal", "glorot_uniform", "lecun_normal")
    # He: std sqrt(2/784) ~ 0.0505 (Keras rescales its truncated normal); Glorot uniform:
    # std sqrt(2/(784+128)) ~ 0.0468; LeCun: sqrt(1/784) ~ 0.0357
    assert relu.numpy_weights()[0].std() == pytest.approx(math.sqrt(2 / 784), rel=0.05)
    assert tanh.numpy_weights()[0].std() == pytest.approx(math.sqrt(2 / 912), rel=0.05)
    assert selu.numpy_weights()[0].std() == pytest.approx(math.sqrt(1 / 784), rel=0.05)


def test_mlp_learns_with_a_hidden_layer(blobs):
    net, fit = _fit("mlp", "relu", blobs)
    assert fit["status"] == "ok"
    assert score_network(net, blobs[2], blobs[3])["accuracy"] > 0.9


def test_same_seed_same_costs_other_seed_other_costs(blobs):
    runs = [_fit("mlp", "tanh", blobs, seed=s)[1]["history"] for s in (7, 7, 8)]
    costs = [[h["cost"] for h in r] for r in runs]
    assert costs[0] == costs[1]
    assert costs[0] != costs[2]


@pytest.mark.parametrize(
    ("optimizer", "schedule"),
    [("sgd", "epoch_decay"), ("momentum", "exponential"), ("adam", "inverse_time")],
)
def test_compiled_epoch_equals_a_plain_step_by_step_loop(blobs, optimizer, schedule):
    x, y = blobs[0], blobs[1]
    cfg = TrainConfig(
        epochs=2,
        batch_size=60,
        learning_rate=0.3 if optimizer != "adam" else 0.01,
        lr_decay=0.1,
        optimizer=optimizer,
        schedule=schedule,
    )
    net = build_network("mlp", "sigmoid", MODELS, seed=3)
    plain = network_from_weights("mlp", "sigmoid", MODELS, net.numpy_weights())
    fit = fit_network(net, x, y, blobs[2], blobs[3], cfg, seed=3)

    rng = np.random.default_rng(3)  # the same shuffles as fit_network
    state = make_state(optimizer, plain.weights)
    steps = len(x) // cfg.batch_size
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(x))
        costs, rates = [], []
        for i in range(steps):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            t = epoch * steps + i
            lr = learning_rate(schedule, cfg.learning_rate, cfg.lr_decay, t, steps)
            with tf.GradientTape() as tape:
                cost = plain.cost(plain.output(tf.constant(x[idx])), one_hot(y[idx]))
            grads = tape.gradient(cost, plain.weights)
            apply_update(optimizer, plain.weights, grads, state, lr, t, cfg.momentum)
            costs.append(float(cost))
            rates.append(float(lr))
        assert fit["history"][epoch]["cost"] == pytest.approx(np.mean(costs), rel=1e-5)
        assert fit["history"][epoch]["learning_rate"] == pytest.approx(np.mean(rates), rel=1e-5)
    # XLA and eager kernels round differently; Adam's g / sqrt(v) magnifies that where v ~ 0
    for a, b in zip(net.numpy_weights(), plain.numpy_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_other_optimisers_learn_and_start_fresh_each_run(blobs, optimizer):
    lr = 0.05 if optimizer == "momentum" else 0.005
    runs = [_fit("mlp", "relu", blobs, optimizer=optimizer, learning_rate=lr) for _ in range(2)]
    (net, fit), (_, again) = runs
    assert fit["status"] == "ok"
    assert score_network(net, blobs[2], blobs[3])["accuracy"] > 0.9
    # optimiser state (velocity, moments) is reset: a second identical run repeats the first
    assert [h["cost"] for h in fit["history"]] == [h["cost"] for h in again["history"]]


def test_batch_larger_than_the_training_set_is_refused(blobs):
    net = build_network("tutorial", "softmax", MODELS, 0)
    with pytest.raises(ValueError, match="train.batch_size = 1000 exceeds the 600"):
        fit_network(net, *blobs, TrainConfig(batch_size=1000), 0)


def test_saved_weights_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="saved weights have shapes"):
        network_from_weights("mlp", "relu", MODELS, [np.zeros((784, 10)), np.zeros(10)])


def test_degenerate_rule_flags_costs_that_contradict_the_accuracy():
    from tasks.training.loop import degenerate_reason

    # the tutorial's sigmoid after 10 epochs on Fashion-MNIST: loss ~0.001, accuracy ~0.31
    assert "below 0.998" in degenerate_reason(0.001, 0.31)
    # softplus: outputs above 1 make the cost negative
    assert "negative" in degenerate_reason(-4.5, 0.68)
    # the tutorial's softmax: loss 0.45 only promises 2e^-0.45 - 1 = 0.275
    assert degenerate_reason(0.45, 0.84) is None
    assert degenerate_reason(float("nan"), 0.1) is None  # diverged runs are not degenerate


def test_softmax_outputs_never_break_the_degenerate_bound():
    from tasks.training.loop import DEGENERATE_MARGIN, degenerate_reason

    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 3.0, 10.0):
        logits = rng.normal(0, scale, (2000, 10)) + scale * np.eye(10)[rng.integers(0, 10, 2000)]
        labels = rng.integers(0, 10, 2000)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = float(-np.log(p[np.arange(2000), labels]).mean())
        accuracy = float((p.argmax(1) == labels).mean())
        assert accuracy >= 2 * np.exp(-loss) - 1 - DEGENERATE_MARGIN
        assert degenerate_reason(loss, accuracy) is None


def test_a_finished_run_whose_cost_lies_is_degenerate(blobs):
    # tutorial sigmoid pushed hard: every output -> 1, cost ~0.0003 at ~75 % accuracy
    _, fit = _fit("tutorial", "sigmoid", blobs, epochs=1, learning_rate=5.0)
    assert fit["status"] == "degenerate"
    assert "validation accuracy" in fit["reason"] and "below" in fit["reason"]
    # the same network trained gently classifies every blob: small cost, and honest
    _, gentle = _fit("tutorial", "sigmoid", blobs, epochs=1, learning_rate=0.1)
    assert gentle["status"] == "ok" and gentle["history"][-1]["val_accuracy"] == 1.0


def test_leaky_relu_slope_and_its_he_gain_come_from_the_config():
    cfg = ModelsConfig(leaky_relu_slope=0.2)
    net = build_network("mlp", "leaky_relu", cfg, seed=0)
    # a probe: the tutorial's single layer with W = -I maps ones to -1 before the activation
    probe = network_from_weights(
        "tutorial", "leaky_relu", cfg, [-np.eye(784, 10, dtype=np.float32), np.zeros(10, "f4")]
    )
    out = probe.output(tf.ones([1, 784])).numpy()
    np.testing.assert_allclose(out[0, :3], [-0.2, -0.2, -0.2], rtol=1e-6)  # slope 0.2 below 0
    assert net.init == "he_normal_leaky"
    # He with the leaky gain: std sqrt(2 / ((1 + a^2) 784))
    expected = math.sqrt(2 / ((1 + 0.2**2) * 784))
    assert net.numpy_weights()[0].std() == pytest.approx(expected, rel=0.05)


def test_tutorial_init_can_be_chosen():
    glorot = build_network(
        "tutorial", "softmax", ModelsConfig(tutorial={"init": "glorot_uniform"}), seed=0
    )
    auto = build_network("tutorial", "relu", ModelsConfig(tutorial={"init": "auto"}), seed=0)
    assert glorot.init == "glorot_uniform" and np.any(glorot.numpy_weights()[0])
    assert auto.init == "he_normal"
    assert build_network("tutorial", "relu", MODELS, 0).init == "zeros"  # the default


def test_zero_initialised_hidden_units_stay_identical(blobs):
    cfg = ModelsConfig(mlp={"init": "zeros", "hidden_units": [16]})
    net = build_network("mlp", "sigmoid", cfg, seed=0)
    fit_network(net, *blobs, TrainConfig(epochs=2, batch_size=50), seed=0)
    w0 = net.numpy_weights()[0]  # (784, 16): every column (hidden unit) the same
    np.testing.assert_allclose(w0, np.repeat(w0[:, :1], 16, axis=1), rtol=1e-5, atol=1e-7)


def test_pixels_kept_as_bytes_train_exactly_like_floats(blobs):
    from tasks.training.inputs import as_pixels

    y, xv, yv = blobs[1], blobs[2], blobs[3]
    x = np.random.default_rng(1).integers(0, 256, (600, 784)).astype(np.float32) / np.float32(255)
    pixels = as_pixels(x, rows=128)
    assert pixels.dtype == tf.uint8
    assert as_pixels(x + np.float32(0.001)).dtype == tf.float32  # not k/255: stays float
    assert as_pixels(x * 2).dtype == tf.float32  # out of [0, 1]
    cfg = TrainConfig(epochs=2, batch_size=50)
    runs = []
    for inputs in (x, pixels):
        net = build_network("mlp", "tanh", MODELS, seed=5)
        runs.append((net, fit_network(net, inputs, y, xv, yv, cfg, seed=5)))
    (a, fit_a), (b, fit_b) = runs
    assert [h["cost"] for h in fit_a["history"]] == [h["cost"] for h in fit_b["history"]]
    for wa, wb in zip(a.numpy_weights(), b.numpy_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def _catalogue_network(activation: str):
    """The mlp with `activation` in its hidden layer (softmax, which may only be the tutorial's
    output, in the tutorial)."""
    model = "mlp" if ACTIVATIONS[activation].hidden_ok else "tutorial"
    return build_network(model, activation, ModelsConfig(mlp={"hidden_units": [32]}), seed=0)


def _moved(before: list[np.ndarray], after: list[np.ndarray]) -> list[bool]:
    return [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_of_the_catalogue_takes_a_training_step(blobs, activation):
    """One gradient step, eagerly (milliseconds): the cost falls on the batch, and the gradient
    reaches every layer through the activation."""
    net = _catalogue_network(activation)
    x, y = tf.constant(blobs[0][:100]), one_hot(blobs[1][:100])
    before = net.numpy_weights()
    with tf.GradientTape() as tape:
        cost = net.cost(net.output(x), y)
    grads = tape.gradient(cost, net.weights)
    apply_update("sgd", net.weights, grads, make_state("sgd", net.weights), 0.1, 0, 0.0)

    after = float(net.cost(net.output(x), y))
    assert math.isfinite(float(cost)) and after < float(cost)
    assert all(_moved(before, net.numpy_weights()))


@pytest.mark.slow  # one XLA compilation per activation: about 2 s each
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_of_the_catalogue_trains_an_epoch(blobs, activation):
    """One epoch through fit_network, the compiled path the flow uses: every layer's weights move
    and stay finite, and the validation loss falls."""
    net = _catalogue_network(activation)
    before = net.numpy_weights()
    start = score_network(net, blobs[2], blobs[3])

    fit = fit_network(net, *blobs, TrainConfig(epochs=1, batch_size=50, learning_rate=0.1), 0)

    assert fit["status"] == "ok", fit["reason"]
    assert len(fit["history"]) == 1 and math.isfinite(fit["history"][0]["cost"])
    after = net.numpy_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert all(_moved(before, after))
    assert fit["history"][0]["val_loss"] < start["loss"]
