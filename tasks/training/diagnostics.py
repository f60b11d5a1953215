"""What happens inside a network: per-hidden-layer diagnostics on a fixed probe, and where a
diverged run first stopped being finite.

Per hidden layer, after each epoch, on the probe (the first `train.probe_size` validation
images, the same for every network):

    layer<k>.preact_mean, .preact_std   mean and std of x·W + b over every probe image and unit
    layer<k>.act_mean, .act_std         the same of the activation's output
    layer<k>.dead_fraction              units whose activation's derivative is exactly 0 on every
                                        probe image: no gradient reaches their weights
    layer<k>.saturated_fraction         units, not dead, whose derivative is below
                                        SATURATION_LEVEL of the activation's largest derivative
                                        on at least SATURATED_IMAGES of the probe images
    layer<k>.grad_norm                  Frobenius norm of d(probe cost)/dW of the layer
    layer<k>.grad_norm_ratio            that norm over the output layer's (output.grad_norm)

Layers are numbered from 1 (the first hidden layer). The probe only reads the weights: training
is the same, bit for bit, with diagnostics on or off.

`first_nonfinite` replays a diverged epoch step by step from the weights it started with and
names the first tensor that held a NaN or an infinity, and the step.
"""

import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tasks.core.results import NonFinite
from tasks.training.activations import activation_fn
from tasks.training.inputs import features
from tasks.training.models import Network
from tasks.training.optim import apply_update, learning_rate

# A unit is saturated when its derivative is below this share of the activation's largest
# derivative (sigmoid: 0.05 * 0.25, |z| > 4.4; tanh: 0.05, |z| > 1.8; ReLU: 0, z < 0) ...
SATURATION_LEVEL = 0.05
# ... on at least this share of the probe images (and it is not dead: dead units are counted apart).
SATURATED_IMAGES = 0.9

LAYER_STATS = (
    "preact_mean",
    "preact_std",
    "act_mean",
    "act_std",
    "dead_fraction",
    "saturated_fraction",
    "grad_norm",
    "grad_norm_ratio",
)
OUTPUT_GRAD_NORM = "output.grad_norm"
SECONDS = "diagnostics_seconds"  # time the probe took after the epoch (stacked: a share)


def metric_name(layer: int, stat: str) -> str:
    """The MLflow metric of hidden layer `layer` (1-based): e.g. layer1.dead_fraction."""
    return f"layer{layer}.{stat}"


def _derivative(fn: Callable, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(fn(z), fn'(z)) elementwise: the gradient of sum(fn(z)) is fn' for elementwise fn."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        a = fn(z)
    return a, tape.gradient(a, z)


@functools.lru_cache(maxsize=64)
def peak_derivative(activation: str, slope: float) -> float:
    """The activation's largest |derivative| over z in [-20, 20] (sigmoid 0.25, SELU 1.76)."""
    z = tf.constant(np.linspace(-20.0, 20.0, 40_001, dtype=np.float32))
    _, d = _derivative(activation_fn(activation, slope=slope), z)
    return float(tf.reduce_max(tf.abs(d)))


def compile_probe(net: Network) -> Callable:
    """The diagnostics of `net` (whose variables it reads at each call) as one graph that
    computes every layer itself: (x, y_one_hot) -> {stat: (hidden layers,) tensor,
    "grad_norm_all": (layers,) tensor}. Training uses `compile_probes`, which gives the same
    numbers from the validation pass's first layer."""
    peak = peak_derivative(net.activation, net.leaky_slope)

    @tf.function(reduce_retracing=True, autograph=False)
    def probe(x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
        return probed(net, peak, features(x), y)

    return probe


def compile_probes(nets: Sequence[Network]) -> Callable:
    """Each of `nets`' diagnostics in one graph, the inputs turned into floats once, the first
    layer's x·W + b of the probe's images taken from the validation pass (the last output of
    `loop.compile_scores`, `firsts`, one per network) instead of computed again: the same
    numbers as `compile_probe`'s. For the mlp's nine (784-128-10, 1,000 images), in a flow,
    ~0.018 s an epoch instead of ~0.026 s computing it here. A network stopped in a stack is
    measured too, unread."""
    peaks = [peak_derivative(n.activation, n.leaky_slope) for n in nets]

    @tf.function(reduce_retracing=True, autograph=False)
    def probe(x: tf.Tensor, y: tf.Tensor, firsts: list[tf.Tensor]) -> list[dict[str, tf.Tensor]]:
        inputs = features(x)
        return [
            probed(net, peak, inputs, y, first)
            for net, peak, first in zip(nets, peaks, firsts, strict=True)
        ]

    return probe


def probed(
    net: Network, peak: float, inputs: tf.Tensor, y: tf.Tensor, first: tf.Tensor | None = None
) -> dict[str, tf.Tensor]:
    """The ops of every diagnostics graph, for one network (compile_probe) or several
    (compile_probes, one network alone or a stack): `net`'s statistics on float `inputs` with
    one-hot `y`, `peak` its activation's largest derivative (peak_derivative).

    `first`: the first layer's pre-activation of `inputs` (x·W + b), when a pass over more
    images already computed it (stack: the validation pass, whose first rows are the probe).
    The first kernel's gradient is then the one the tape would give through that product,
    inputsᵀ · d(cost)/d(x·W + b): TensorFlow's own MatMul gradient, the same numbers."""
    act = net.activation_fn
    kernels = net.weights[0::2]
    with tf.GradientTape() as tape:
        if first is not None:
            tape.watch(first)
        layers = net.forward(inputs, first)
        cost = net.cost(layers[-1][1], y)
    if first is None:
        grads = tape.gradient(cost, kernels)
    else:
        d_first, *rest = tape.gradient(cost, [first, *kernels[1:]])
        grads = [tf.matmul(inputs, d_first, transpose_a=True), *rest]
    grad_norms = tf.stack([tf.norm(g) for g in grads])
    stats: dict[str, list[tf.Tensor]] = {s: [] for s in LAYER_STATS}
    for z, _ in layers[: net.n_hidden]:  # (images, units)
        a, d = _derivative(act, z)
        d = tf.abs(d)
        dead = tf.reduce_all(tf.equal(d, 0.0), axis=0)  # (units,)
        low = tf.reduce_mean(tf.cast(d < SATURATION_LEVEL * peak, tf.float32), axis=0)
        saturated = tf.logical_and(low >= SATURATED_IMAGES, tf.logical_not(dead))
        # NaN pre-activations (a diverged network) make no unit dead or saturated: say NaN
        known = tf.where(tf.reduce_all(tf.math.is_finite(z)), 1.0, float("nan"))
        for name, value in (
            ("preact_mean", tf.reduce_mean(z)),
            ("preact_std", tf.math.reduce_std(z)),
            ("act_mean", tf.reduce_mean(a)),
            ("act_std", tf.math.reduce_std(a)),
            ("dead_fraction", known * tf.reduce_mean(tf.cast(dead, tf.float32))),
            ("saturated_fraction", known * tf.reduce_mean(tf.cast(saturated, tf.float32))),
        ):
            stats[name].append(value)
    out = {name: tf.stack(values) for name, values in stats.items() if values}
    out["grad_norm_all"] = grad_norms
    return out


def layer_diagnostics(measured: dict[str, tf.Tensor]) -> dict[str, float]:
    """What `compile_probe`'s graph returned, as MLflow metrics: {"layer1.act_std": ..., ...}."""
    arrays = {name: value.numpy() for name, value in measured.items()}
    norms = [float(v) for v in arrays["grad_norm_all"]]
    out: dict[str, float] = {}
    hidden, last = norms[:-1], norms[-1]
    for k, norm in enumerate(hidden, start=1):
        for stat in LAYER_STATS[:6]:
            out[metric_name(k, stat)] = float(arrays[stat][k - 1])
        out[metric_name(k, "grad_norm")] = norm
        finite = np.isfinite(norm) and np.isfinite(last) and last > 0
        out[metric_name(k, "grad_norm_ratio")] = norm / last if finite else float("nan")
    out[OUTPUT_GRAD_NORM] = last
    return out


# ---------------------------------------------------------------------------------------------
# Where a diverged epoch first stopped being finite


def _describe(values: np.ndarray) -> str:
    """'NaN in 12, -inf in 3 of 1,000 values'."""
    counts = [
        ("NaN", int(np.isnan(values).sum())),
        ("+inf", int(np.isposinf(values).sum())),
        ("-inf", int(np.isneginf(values).sum())),
    ]
    found = [f"{label} in {n:,}" for label, n in counts if n]
    return f"{', '.join(found)} of {values.size:,} values"


def layer_name(net: Network, k: int) -> str:
    """Layer k (1-based) as the diagnostics name it: layer1, layer2, ..., and `output` for the
    last (the mlp's logits; the tutorial's only layer)."""
    return "output" if k == net.n_layers else f"layer{k}"


def _step_tensors(net: Network, x: tf.Tensor, y: tf.Tensor, names: list[str]):
    """One step's tensors in the order they are computed, as (name, tensor): each layer's
    pre-activation and activation, the cost, each gradient. Layers are numbered from 1."""
    named = []
    with tf.GradientTape() as tape:
        layers = net.forward(x)
        for k, (z, h) in enumerate(layers, start=1):
            named.append((f"{layer_name(net, k)}.preact (x·W + b)", z))
            if net.activated(k - 1):
                named.append((f"{layer_name(net, k)}.act ({net.activation})", h))
        out = layers[-1][1]
        if net.model == "tutorial":
            # the tutorial's cost as written takes log(pred): name it, it is where most fail
            named.append(("log(output) in the cost", tf.math.log(out)))
        cost = net.cost(out, y)
    named.append(("cost", cost))
    grads = tape.gradient(cost, net.weights)
    named += [(f"{n} gradient", g) for n, g in zip(names, grads, strict=True)]
    return named, grads, out


def _why(name: str, out: tf.Tensor) -> str:
    """A measured reason for the tensors whose failure has one obvious cause."""
    if name.startswith("log(output)"):
        low = float(tf.reduce_min(out))
        if low == 0.0:
            return ": an output was exactly 0, and log(0) = -inf"
        if low < 0.0:
            return f": an output was negative (as low as {low:.4g}), and has no logarithm"
    if name == "cost":
        largest = float(tf.reduce_max(tf.abs(out)))
        if np.isfinite(largest):
            return f": the outputs were finite but as large as {largest:.3g}"
    return ""


def first_nonfinite(
    net: Network,
    start: list[np.ndarray],
    state: list[np.ndarray],
    x: tf.Tensor,
    y: tf.Tensor,
    order: np.ndarray,
    cfg,
    epoch: int,
    n_batches: int,
) -> NonFinite | None:
    """Replay epoch `epoch` step by step (plain TensorFlow, not XLA) from the weights `start`
    and optimiser state `state` it began with, checking every tensor of each step in the order
    it is computed: each layer's pre-activation and activation, the cost, each gradient, each
    weight after the update. The first that holds a NaN or an infinity, or None when the replay
    stayed finite (XLA and the plain kernels may round differently).

    Costs at most one epoch of eager steps, and only for a run that diverged.
    """
    weights = [tf.Variable(w) for w in start]
    replay = Network(net.model, net.activation, net.init, weights, net.leaky_slope)
    slots = [tf.Variable(s) for s in state]
    lr0, decay, momentum = cfg.learning_rate, cfg.lr_decay, cfg.momentum
    names = [f"{layer_name(net, i // 2 + 1)}.{'Wb'[i % 2]}" for i in range(len(weights))]
    for i in range(n_batches):
        idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        xb, yb = features(tf.gather(x, idx)), tf.gather(y, idx)
        step = epoch * n_batches + i
        named, grads, out = _step_tensors(replay, xb, yb, names)
        for name, tensor in named:
            values = tensor.numpy()
            if not np.isfinite(values).all():
                detail = _describe(np.atleast_1d(values)) + _why(name, out)
                return NonFinite(name, epoch, i, step, detail)
        lr = learning_rate(cfg.schedule, lr0, decay, step, n_batches)
        apply_update(cfg.optimizer, weights, grads, slots, lr, step, momentum)
        for name, w in zip(names, weights, strict=True):
            values = w.numpy()
            if not np.isfinite(values).all():
                return NonFinite(f"{name} after the update", epoch, i, step, _describe(values))
    return None
