"""Per-layer diagnostics on constructed networks with known answers, training left untouched by
them, and the first non-finite value of a diverged epoch."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tasks.core.config import ModelsConfig, TrainConfig
from tasks.report import why
from tasks.training import diagnostics
from tasks.training.diagnostics import (
    compile_probe,
    compile_probes,
    first_nonfinite,
    layer_diagnostics,
)
from tasks.training.inputs import one_hot
from tasks.training.loop import compile_scores, fit_network
from tasks.training.models import build_network, network_from_weights


@pytest.fixture(scope="module")
def probe_batch():
    """400 images with pixels uniform in [0, 1] and random labels: (x, one-hot y)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (400, 784)).astype(np.float32)
    return tf.constant(x), one_hot(rng.integers(0, 10, 400))


def _measure(model, activation, hidden, arrays, batch):
    cfg = ModelsConfig(mlp={"hidden_units": hidden})
    net = network_from_weights(model, activation, cfg, arrays)
    return net, layer_diagnostics(compile_probe(net)(*batch))


def _weights(activation, hidden, seed=0):
    net = build_network("mlp", activation, ModelsConfig(mlp={"hidden_units": hidden}), seed)
    return net.numpy_weights()


def test_a_bias_of_minus_ten_before_relu_kills_every_unit(probe_batch):
    arrays = _weights("relu", [32, 16])
    arrays[1] = np.full_like(arrays[1], -10.0)  # b of layer 1: x·W + b < 0 for every image
    _, measured = _measure("mlp", "relu", [32, 16], arrays, probe_batch)
    assert measured["layer1.dead_fraction"] == 1.0
    assert measured["layer1.saturated_fraction"] == 0.0  # dead units are counted apart
    assert measured["layer1.act_mean"] == 0.0 and measured["layer1.act_std"] == 0.0
    assert measured["layer1.grad_norm"] == 0.0  # no gradient reaches a dead layer's weights
    # layer 2 now sees only zeros: its units output relu(b) = 0 -> dead too
    assert measured["layer2.dead_fraction"] == 1.0
    # the same network with its bias at 0 has live units
    _, healthy = _measure("mlp", "relu", [32, 16], _weights("relu", [32, 16]), probe_batch)
    assert healthy["layer1.dead_fraction"] < 0.2 and healthy["layer1.grad_norm"] > 0


def test_weights_times_100_before_sigmoid_saturate_the_layer(probe_batch):
    arrays = _weights("sigmoid", [64, 32])
    _, plain = _measure("mlp", "sigmoid", [64, 32], arrays, probe_batch)
    arrays[0] = arrays[0] * 100.0  # pre-activations ~100x wider: sigmoid is flat almost everywhere
    _, scaled = _measure("mlp", "sigmoid", [64, 32], arrays, probe_batch)
    assert plain["layer1.saturated_fraction"] == 0.0
    assert scaled["layer1.saturated_fraction"] >= 0.9
    # the rest are units whose derivative underflows to exactly 0 on every image: dead
    assert scaled["layer1.saturated_fraction"] + scaled["layer1.dead_fraction"] >= 0.9
    assert scaled["layer1.preact_std"] == pytest.approx(100 * plain["layer1.preact_std"], rel=1e-3)


def test_gradient_norms_equal_a_plain_gradient_tape_on_the_same_batch(probe_batch):
    x, y = probe_batch
    arrays = _weights("tanh", [48, 32, 24], seed=3)
    net, measured = _measure("mlp", "tanh", [48, 32, 24], arrays, probe_batch)
    with tf.GradientTape() as tape:
        cost = net.cost(net.output(x), y)
    norms = [float(tf.norm(g)) for g in tape.gradient(cost, net.weights)[0::2]]
    for k in (1, 2, 3):
        assert measured[f"layer{k}.grad_norm"] == pytest.approx(norms[k - 1], rel=1e-5)
        ratio = measured[f"layer{k}.grad_norm_ratio"]
        assert ratio == pytest.approx(norms[k - 1] / norms[-1], rel=1e-5)
    assert measured["output.grad_norm"] == pytest.approx(norms[-1], rel=1e-5)


def test_statistics_are_those_of_the_layers_on_the_probe(probe_batch):
    x, _ = probe_batch
    arrays = _weights("elu", [20])
    _, measured = _measure("mlp", "elu", [20], arrays, probe_batch)
    z = x.numpy() @ arrays[0] + arrays[1]
    a = np.where(z > 0, z, np.expm1(z))
    assert measured["layer1.preact_mean"] == pytest.approx(z.mean(), rel=1e-4, abs=1e-6)
    assert measured["layer1.preact_std"] == pytest.approx(z.std(), rel=1e-4)
    assert measured["layer1.act_mean"] == pytest.approx(a.mean(), rel=1e-4, abs=1e-6)
    assert measured["layer1.act_std"] == pytest.approx(a.std(), rel=1e-4)
    names = {f"layer1.{s}" for s in diagnostics.LAYER_STATS} | {"output.grad_norm"}
    assert set(measured) == names


def test_a_diverged_network_gets_nan_not_dead_units(probe_batch):
    arrays = _weights("relu", [8])
    arrays[0][0, 0] = np.nan
    _, measured = _measure("mlp", "relu", [8], arrays, probe_batch)
    assert math.isnan(measured["layer1.dead_fraction"])
    assert math.isnan(measured["layer1.saturated_fraction"])


def test_peak_derivatives_and_the_thresholds_the_report_states():
    assert diagnostics.peak_derivative("sigmoid", 0.01) == pytest.approx(0.25, rel=1e-4)
    assert diagnostics.peak_derivative("relu", 0.01) == pytest.approx(1.0)
    assert diagnostics.peak_derivative("selu", 0.01) == pytest.approx(1.0507 * 1.67326, rel=1e-3)
    # the report (which loads no TensorFlow) states the same thresholds the probe applies
    assert why.SATURATION_LEVEL == diagnostics.SATURATION_LEVEL
    assert why.SATURATED_IMAGES == diagnostics.SATURATED_IMAGES


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = (rng.integers(0, 256, (700, 784)) / np.float32(255)).astype(np.float32)
    y = rng.integers(0, 10, 700)
    return x[:600], y[:600], x[600:], y[600:]


@pytest.mark.parametrize(
    ("activation", "optimizer"), [("sigmoid", "sgd"), ("relu", "momentum"), ("selu", "adam")]
)
def test_training_is_bit_identical_with_diagnostics_on_or_off(data, activation, optimizer):
    cfg = ModelsConfig(mlp={"hidden_units": [32, 16]})
    runs = []
    for on in (True, False):
        net = build_network("mlp", activation, cfg, seed=4)
        train = TrainConfig(
            epochs=3, batch_size=50, learning_rate=0.01, optimizer=optimizer, diagnostics=on
        )
        runs.append((net, fit_network(net, *data, train, seed=4)))
    (on_net, on_fit), (off_net, off_fit) = runs
    assert [h["cost"] for h in on_fit["history"]] == [h["cost"] for h in off_fit["history"]]
    assert [h["val_loss"] for h in on_fit["history"]] == [h["val_loss"] for h in off_fit["history"]]
    for a, b in zip(on_net.numpy_weights(), off_net.numpy_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    first = on_fit["history"][0]["diagnostics"]
    assert {"layer1.grad_norm_ratio", "layer2.act_std", "diagnostics_seconds"} <= set(first)
    assert "diagnostics" not in off_fit["history"][0]


def test_the_probe_is_the_first_probe_size_validation_images(data):
    x, y, xv, yv = data
    net = build_network("mlp", "relu", ModelsConfig(mlp={"hidden_units": [16]}), seed=0)
    start = network_from_weights(
        "mlp", "relu", ModelsConfig(mlp={"hidden_units": [16]}), net.numpy_weights()
    )
    fit = fit_network(net, x, y, xv, yv, TrainConfig(epochs=1, probe_size=30), seed=0)
    measured = fit["history"][0]["diagnostics"]
    expected = layer_diagnostics(compile_probe(net)(tf.constant(xv[:30]), one_hot(yv[:30])))
    assert measured["layer1.grad_norm"] == pytest.approx(expected["layer1.grad_norm"], rel=1e-5)
    before = layer_diagnostics(compile_probe(start)(tf.constant(xv[:30]), one_hot(yv[:30])))
    assert measured["layer1.grad_norm"] != before["layer1.grad_norm"]  # after the epoch, not before


def test_the_tutorial_model_has_no_hidden_layer_to_probe(data):
    net = build_network("tutorial", "softmax", ModelsConfig(), seed=0)
    fit = fit_network(net, *data, TrainConfig(epochs=1, batch_size=50), seed=0)
    assert "diagnostics" not in fit["history"][0]


# --- the first non-finite value ---------------------------------------------------------------


def test_tutorial_relu_fails_at_log_of_zero_in_step_0(data):
    net = build_network("tutorial", "relu", ModelsConfig(), seed=0)
    fit = fit_network(net, *data, TrainConfig(epochs=2, batch_size=50), seed=0)
    cause = fit["nonfinite"]
    assert fit["status"] == "diverged"
    assert (cause.tensor, cause.epoch, cause.step, cause.global_step) == (
        "log(output) in the cost", 0, 0, 0,
    )  # fmt: skip
    assert "-inf in 500 of 500 values" in cause.detail  # relu(0) = 0 for every output
    assert "an output was exactly 0" in cause.detail
    assert "first non-finite value: log(output) in the cost at step 0 of epoch 0" in fit["reason"]


def test_an_overflowing_layer_is_named_at_the_step_it_overflows(data):
    x, y = data[0], data[1]
    cfg = ModelsConfig(mlp={"hidden_units": [8, 8]})
    arrays = _weights("linear", [8, 8])
    arrays[0] = np.ones_like(arrays[0])  # layer 1 outputs the pixel sums, about 390 each
    arrays[2] = np.full_like(arrays[2], 1e36)  # layer 2's W: finite, but 8 * 390 * 1e36 is not
    net = network_from_weights("mlp", "linear", cfg, arrays)
    order = np.arange(100, dtype=np.int32)
    train = TrainConfig(batch_size=50)
    cause = first_nonfinite(net, arrays, [], tf.constant(x), one_hot(y), order, train, 3, 2)
    assert cause.tensor == "layer2.preact (x·W + b)"
    assert (cause.epoch, cause.step, cause.global_step) == (3, 0, 6)  # epoch 3 of 2 steps each
    assert "inf in" in cause.detail and "of 400 values" in cause.detail  # (50, 8)


def test_a_replay_that_stays_finite_says_so(data):
    x, y = data[0], data[1]
    arrays = _weights("relu", [8])
    net = network_from_weights("mlp", "relu", ModelsConfig(mlp={"hidden_units": [8]}), arrays)
    order = np.arange(100, dtype=np.int32)
    train = TrainConfig(batch_size=50)
    assert first_nonfinite(net, arrays, [], tf.constant(x), one_hot(y), order, train, 0, 2) is None


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "selu"])
def test_the_probe_fed_by_the_validation_pass_measures_what_it_measures_alone(
    probe_batch, activation
):
    """Training probes with the first layer's x·W + b the validation pass computed (its first
    rows): the same numbers, to the bit, as the probe computing everything itself."""
    arrays = _weights(activation, [32, 16], seed=3)
    net, alone = _measure("mlp", activation, [32, 16], arrays, probe_batch)
    x, y = probe_batch
    rows = 150
    ((*_, first),) = compile_scores([net])(x, y, tf.constant(rows))
    (fed,) = compile_probes([net])(x[:rows], y[:rows], [first])
    _, expected = _measure("mlp", activation, [32, 16], arrays, (x[:rows], y[:rows]))
    assert first.shape == (rows, 32)
    assert {k: np.float64(v).hex() for k, v in layer_diagnostics(fed).items()} == {
        k: np.float64(v).hex() for k, v in expected.items()
    }
    assert alone != expected  # the rows matter: 150 of the 400 images measure otherwise
