"""Networks trained together in one program end exactly as each would alone (fit_network): the same
costs, validation metrics, diagnostics, status and weights, bit for bit; a diverging one stops
where it would alone and leaves the others untouched."""

import math

import numpy as np
import pytest

from tasks.core.config import ModelsConfig, TrainConfig
from tasks.training.diagnostics import SECONDS
from tasks.training.loop import fit_network
from tasks.training.models import build_network
from tasks.training.stack import fit_stacked

MODELS = ModelsConfig(mlp={"hidden_units": [32]})


def _exact(value):
    """A fit result with every float kept exactly (NaN equal to NaN) and the timings left out:
    two results compare equal only if every number is the same to the last bit."""
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items() if k not in ("epoch_seconds", SECONDS)}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    if isinstance(value, float):
        return "nan" if math.isnan(value) else value.hex()
    return value


def _assert_same_weights(a, b) -> None:
    for wa, wb in zip(a.numpy_weights(), b.numpy_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)  # NaN where NaN, every other value to the bit


def _alone_and_stacked(model: str, activations: list[str], data, cfg: TrainConfig, seed=0):
    alone = []
    for activation in activations:
        net = build_network(model, activation, MODELS, seed)
        alone.append((net, fit_network(net, *data, cfg, seed)))
    nets = [build_network(model, a, MODELS, seed) for a in activations]
    records: list[list[dict]] = [[] for _ in nets]
    fits = fit_stacked(nets, *data, cfg, seed, on_epoch=[r.append for r in records])
    return alone, list(zip(nets, fits, strict=True)), records


def _assert_each_as_alone(alone, stacked, records) -> None:
    for (net_a, fit_a), (net_s, fit_s), seen in zip(alone, stacked, records, strict=True):
        assert _exact(fit_s) == _exact(fit_a), net_s.activation
        _assert_same_weights(net_s, net_a)
        assert seen == fit_s["history"]  # each network's callback saw its own records


@pytest.mark.parametrize(("optimizer", "rate"), [("sgd", 0.1), ("adam", 0.01)], ids=["sgd", "adam"])
def test_tutorial_networks_stacked_end_as_each_alone(blobs, optimizer, rate):
    cfg = TrainConfig(epochs=3, batch_size=50, learning_rate=rate, optimizer=optimizer)
    activations = ["softmax", "sigmoid", "relu", "tanh"]
    alone, stacked, records = _alone_and_stacked("tutorial", activations, blobs, cfg)
    _assert_each_as_alone(alone, stacked, records)
    status = {net.activation: fit["status"] for net, fit in stacked}
    # relu and tanh output 0 (or less) at the zero start: the tutorial's log(pred) is NaN at once
    assert (status["softmax"], status["relu"], status["tanh"]) == ("ok", "diverged", "diverged")
    assert [len(fit["history"]) for _, fit in stacked] == [3, 3, 1, 1]
    assert stacked[2][1]["nonfinite"].tensor == "log(output) in the cost"


@pytest.mark.parametrize(("optimizer", "rate"), [("sgd", 0.1), ("adam", 0.01)], ids=["sgd", "adam"])
def test_mlps_stacked_end_as_each_alone_with_their_diagnostics(blobs, optimizer, rate):
    cfg = TrainConfig(epochs=3, batch_size=50, learning_rate=rate, optimizer=optimizer)
    alone, stacked, records = _alone_and_stacked("mlp", ["relu", "tanh", "gelu"], blobs, cfg)
    _assert_each_as_alone(alone, stacked, records)
    assert all(fit["status"] == "ok" for _, fit in stacked)
    assert all("layer1.dead_fraction" in r["diagnostics"] for _, fit in stacked
               for r in fit["history"])  # fmt: skip
    # a second stacked run (the compiled program reused) starts its optimiser afresh
    again = [build_network("mlp", a, MODELS, 0) for a in ("relu", "tanh", "gelu")]
    for (_, fit), fit_again in zip(stacked, fit_stacked(again, *blobs, cfg, 0), strict=True):
        assert _exact(fit_again) == _exact(fit)
    for (net, _), net_again in zip(stacked, again, strict=True):
        _assert_same_weights(net_again, net)


def test_ten_networks_in_one_program_still_log_the_cost_each_logs_alone(blobs):
    # Ten is past where XLA once fused the networks' cost reductions into one kernel and rounded
    # the logged cost differently in its last bit (eight were fine): ten copies of one network,
    # each must match the one trained alone.
    cfg = TrainConfig(epochs=2, batch_size=100, diagnostics=False)
    net = build_network("tutorial", "softplus", MODELS, 0)
    fit = fit_network(net, *blobs, cfg, 0)
    copies = [build_network("tutorial", "softplus", MODELS, 0) for _ in range(10)]
    for copy, fit_copy in zip(copies, fit_stacked(copies, *blobs, cfg, 0), strict=True):
        assert _exact(fit_copy) == _exact(fit)
        _assert_same_weights(copy, net)


def test_a_network_diverging_mid_run_stops_there_and_the_others_go_on(blobs):
    # Adam at 0.1 makes the tutorial's softmax so sure that other classes' outputs reach exactly
    # 0, and 0 * log(0) is NaN: it diverges after an epoch or more of training. relu diverges in
    # epoch 0; sigmoid trains all four epochs.
    cfg = TrainConfig(epochs=4, batch_size=50, learning_rate=0.1, optimizer="adam", lr_decay=0.0)
    activations = ["sigmoid", "softmax", "relu", "softplus"]
    alone, stacked, records = _alone_and_stacked("tutorial", activations, blobs, cfg)
    _assert_each_as_alone(alone, stacked, records)
    fits = {net.activation: fit for net, fit in stacked}
    assert fits["relu"]["diverged_epoch"] == 0
    assert fits["softmax"]["status"] == "diverged" and fits["softmax"]["diverged_epoch"] >= 1
    assert len(fits["softmax"]["history"]) == fits["softmax"]["diverged_epoch"] + 1
    assert fits["softmax"]["nonfinite"] is not None
    for name in ("sigmoid", "softplus"):
        assert fits[name]["status"] != "diverged" and len(fits[name]["history"]) == 4
    # an epoch's time is shared among the networks it trained: the same figure for each
    for epoch in range(4):
        seconds = {f["history"][epoch]["epoch_seconds"] for f in fits.values()
                   if len(f["history"]) > epoch}  # fmt: skip
        assert len(seconds) == 1 and seconds.pop() > 0


def test_the_same_networks_in_another_order_reuse_the_compiled_programs(blobs, monkeypatch):
    """The next seed's round lists the same activations in another order (they are ranked): it
    traces and compiles nothing, and each network still ends as it would alone, its results in
    the caller's order."""
    from tasks.training import stack

    cfg = TrainConfig(epochs=4, batch_size=50, learning_rate=0.1, optimizer="adam", lr_decay=0.0)
    first = ["sigmoid", "softmax", "relu", "softplus"]  # relu and softmax diverge: two programs
    fit_stacked([build_network("tutorial", a, MODELS, 0) for a in first], *blobs, cfg, 0)

    compiled = []
    real = stack._compile_stacked_epoch
    monkeypatch.setattr(stack, "_compile_stacked_epoch", lambda *a: compiled.append(a) or real(*a))
    again = ["softplus", "relu", "sigmoid", "softmax"]
    alone, stacked, records = _alone_and_stacked("tutorial", again, blobs, cfg, seed=1)
    _assert_each_as_alone(alone, stacked, records)
    assert [net.activation for net, _ in stacked] == again
    assert compiled == []


def test_stacking_networks_of_different_shapes_or_one_twice_is_refused(blobs):
    cfg = TrainConfig(epochs=1, batch_size=50)
    tutorial = build_network("tutorial", "softmax", MODELS, 0)
    mlp = build_network("mlp", "relu", MODELS, 0)
    with pytest.raises(ValueError, match="same layer sizes; found 784-10, 784-32-10"):
        fit_stacked([tutorial, mlp], *blobs, cfg, 0)
    with pytest.raises(ValueError, match="listed more than once"):
        fit_stacked([tutorial, tutorial], *blobs, cfg, 0)
    with pytest.raises(ValueError, match="1 callbacks for 2 networks"):
        other = build_network("tutorial", "sigmoid", MODELS, 0)
        fit_stacked([tutorial, other], *blobs, cfg, 0, on_epoch=[lambda record: None])
    with pytest.raises(ValueError, match="at least one network"):
        fit_stacked([], *blobs, cfg, 0)
    with pytest.raises(ValueError, match="train.batch_size = 1000 exceeds the 600"):
        fit_stacked([tutorial], *blobs, TrainConfig(batch_size=1000), 0)


def test_training_graphs_are_traced_without_autograph_converting_them(blobs, monkeypatch):
    """The epochs (a tf.while_loop), the scores and the diagnostics probe are TensorFlow ops as
    written: tracing them must not go through AutoGraph, whose parsing and rewriting of the
    Python source was about half of a first group's tracing (0.65 s of the mlp's nine)."""
    from tensorflow.python.autograph.impl import api

    converted = []
    real = api.converted_call
    monkeypatch.setattr(
        api, "converted_call", lambda f, *a, **k: converted.append(f) or real(f, *a, **k)
    )
    models = ModelsConfig(mlp={"hidden_units": [24]})  # a shape no other test compiles first
    cfg = TrainConfig(epochs=1, batch_size=50, diagnostics=True)
    nets = [build_network("mlp", a, models, 0) for a in ("relu", "tanh")]
    fits = fit_stacked(nets, *blobs, cfg, 0)
    alone = fit_network(build_network("mlp", "elu", models, 0), *blobs, cfg, 0)
    assert all("diagnostics" in r for fit in [*fits, alone] for r in fit["history"])
    assert converted == []


def test_the_test_split_is_scored_with_the_graph_that_scored_validation(blobs):
    """The scoring graphs are traced for any number of images once, before the first epoch: the
    test split (another number of images) is scored without tracing them again, alone and
    stacked, with the numbers a fresh graph gives."""
    from tasks.training import loop, stack
    from tasks.training.inputs import as_tensor, one_hot

    cfg = TrainConfig(epochs=1, batch_size=50, learning_rate=0.1)
    x_test, y_test = blobs[2][:150], blobs[3][:150]  # validation has 200
    nets = [build_network("mlp", a, MODELS, 0) for a in ("relu", "tanh")]
    fit_stacked(nets, *blobs, cfg, 0)
    traced = stack._stack_for(nets).score.experimental_get_tracing_count()
    scored = stack.score_stacked(nets, x_test, y_test)
    assert stack._stack_for(nets).score.experimental_get_tracing_count() == traced
    alone = build_network("mlp", "relu", MODELS, 0)
    fit_network(alone, *blobs, cfg, 0)
    traced = loop._graphs_for(alone).score.experimental_get_tracing_count()
    test, predicted = loop.predict_and_score(alone, x_test, y_test)
    assert loop._graphs_for(alone).score.experimental_get_tracing_count() == traced

    (fresh,) = loop.compile_scores([alone])(as_tensor(x_test), one_hot(y_test, 10), loop.NO_ROWS)
    assert [test["loss"], test["accuracy"]] == [float(fresh[0]), float(fresh[1])]
    assert predicted.tolist() == fresh[2].numpy().tolist()
    assert scored[0][0] == test and scored[0][1].tolist() == predicted.tolist()
