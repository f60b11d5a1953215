"""Training one network by mini-batch gradient descent, a whole epoch in one XLA computation.

`fit_network` is the maths (no files, no MLflow); `train_network` is the Prefect task around it that
opens the child MLflow run, logs each epoch as it ends and saves the weights for evaluation.

By default the learning rate used in epoch e is learning_rate * (1 - lr_decay)^e: the per-epoch
decay the tutorial meant (its own update line multiplies by the constant (1 - lr_decay) and never
uses the decayed rate); `tasks.optim` has the other schedules and optimisers. The rate recorded per
epoch is the mean of the rates its steps used. A cost or weight that stops being finite ends the
run as `diverged` at that epoch.
"""

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking
from tasks.config import Cell, ModelsConfig, TrainConfig
from tasks.models import N_CLASSES, Network, build_network
from tasks.optim import apply_update, learning_rate, make_state, reset_state
from tasks.paths import weights_dir

# Same seed, same machine -> same per-epoch costs.
tf.config.experimental.enable_op_determinism()


class _OneTracePerShape(logging.Filter):
    """Each (model, activation, layer sizes) is traced once, by design (see _graphs_for);
    TensorFlow counts those as retracing of one Python function and warns. Drop that warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_OneTracePerShape())


def _compile_epoch(net: Network, state: list, cfg: TrainConfig, batch_size: int, n_batches: int):
    """One epoch of training as a single XLA computation: no Python between the steps.

    `jit_compile` fuses each step's small ops, its batch gather and its weight updates into a
    few kernels, where the plain graph dispatched dozens of ops one by one per step (`make
    bench`, 784-256-10: 0.45-0.55 s/epoch against 0.76; 784-10: 0.12-0.14 against 0.20). Each
    step gathers its own batch from the whole training set, so no shuffled copy of it is made.
    Returns the epoch's mean cost and the mean learning rate its steps used.
    """
    optimizer, schedule = cfg.optimizer, cfg.schedule  # fixed per graph; the numbers are inputs

    @tf.function(jit_compile=True)
    def run_epoch(x, y, order, lr0, decay, momentum, step0, steps) -> tuple[tf.Tensor, tf.Tensor]:
        # steps: n_batches to train an epoch; 0 compiles the computation and changes nothing.
        # A while loop, not `for i in tf.range(steps)`: XLA would take the range's length as a
        # compile-time constant and compile anew for each value.
        total, lr_total = tf.constant(0.0), tf.constant(0.0)
        i = tf.constant(0)
        while i < steps:
            idx = tf.slice(order, [i * batch_size], [batch_size])  # static size, as XLA needs
            xb = _features(tf.gather(x, idx))  # (batch, inputs)
            yb = tf.gather(y, idx)  # (batch, classes)
            step = step0 + i
            lr = learning_rate(schedule, lr0, decay, step, n_batches)
            with tf.GradientTape() as tape:
                cost = net.cost(net.output(xb), yb)  # before this step's update, as logged
            grads = tape.gradient(cost, net.weights)
            apply_update(optimizer, net.weights, grads, state, lr, step, momentum)
            total += cost
            lr_total += lr
            i += 1
        n = tf.cast(n_batches, tf.float32)
        return total / n, lr_total / n

    return run_epoch


def _compile_score(net: Network):
    @tf.function(reduce_retracing=True)  # one graph for any number of images
    def score(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        out = net.output(_features(x))
        hits = tf.equal(tf.argmax(out, axis=1), tf.argmax(y, axis=1))
        return net.cost(out, y), tf.reduce_mean(tf.cast(hits, tf.float32))

    return score


@dataclass
class _Graphs:
    """Compiled graphs for one network shape, with the variables they train (the slot).

    Tracing and compiling cost about a second, so networks of the same model, activation and layer
    sizes share one set of graphs: a network's weights are copied into the slot, trained there,
    copied back.
    """

    slot: Network
    score: Callable
    epochs: dict[tuple, Callable] = field(default_factory=dict)
    states: dict[str, list[tf.Variable]] = field(default_factory=dict)

    def epoch(self, cfg: TrainConfig, n_batches: int) -> Callable:
        """The compiled epoch for these settings, its optimiser state zeroed for a new run."""
        if cfg.optimizer not in self.states:
            self.states[cfg.optimizer] = make_state(cfg.optimizer, self.slot.weights)
        state = self.states[cfg.optimizer]
        reset_state(state)
        key = (cfg.batch_size, n_batches, cfg.optimizer, cfg.schedule)
        if key not in self.epochs:
            self.epochs[key] = _compile_epoch(self.slot, state, cfg, cfg.batch_size, n_batches)
        return self.epochs[key]

    def load(self, net: Network) -> Network:
        for s, w in zip(self.slot.weights, net.weights, strict=True):
            s.assign(w)
        return self.slot

    def store(self, net: Network) -> None:
        for w, s in zip(net.weights, self.slot.weights, strict=True):
            w.assign(s)


_GRAPHS: dict[tuple, _Graphs] = {}


def _graphs_for(net: Network) -> _Graphs:
    # Per thread: two tasks training at once in a thread pool must not share a slot.
    shapes = tuple(tuple(w.shape) for w in net.weights)
    key = (net.model, net.activation, net.leaky_slope, shapes, threading.get_ident())
    if key not in _GRAPHS:
        variables = [tf.Variable(w) for w in net.weights]
        slot = Network(net.model, net.activation, net.init, variables, net.leaky_slope)
        _GRAPHS[key] = _Graphs(slot=slot, score=_compile_score(slot))
    return _GRAPHS[key]


def one_hot(labels, n_classes: int = N_CLASSES) -> tf.Tensor:
    """(n,) integer labels -> (n, n_classes) float32."""
    return tf.one_hot(tf.cast(labels, tf.int32), n_classes, dtype=tf.float32)


def score_network(net: Network, x, labels) -> dict[str, float]:
    """Loss (the model's own cost) and accuracy on a labelled set (x: array or tensor)."""
    graphs = _graphs_for(net)
    graphs.load(net)
    loss, acc = graphs.score(_tensor(x), one_hot(labels, net.n_classes))
    return {"loss": float(loss), "accuracy": float(acc)}


# A run is `degenerate` when its validation accuracy falls this far below the least accuracy its
# validation loss implies for a genuine probability output (see degenerate_reason).
DEGENERATE_MARGIN = 0.05


def degenerate_reason(val_loss: float, val_accuracy: float) -> str | None:
    """Why a finished run's cost cannot be a cross-entropy of probabilities, or None.

    If every output row is a probability vector, mean(-log p_true) = L gives mean(p_true) >=
    e^-L (Jensen), and p_true > 1/2 makes the true class the argmax, so accuracy >= 2 e^-L - 1.
    The tutorial's sigmoid reaches L ~ 0.001 (bound 0.998) at ~30 % accuracy; softplus drives L
    below 0. Softmax outputs always satisfy the bound, so a violation flags the cost, not chance.
    """
    if not (math.isfinite(val_loss) and math.isfinite(val_accuracy)):
        return None
    if val_loss < 0:
        return (
            f"validation loss {val_loss:.4g} is negative: the outputs are not probabilities, "
            "so the cost rewards growing them rather than classifying"
        )
    bound = 2.0 * math.exp(-val_loss) - 1.0
    if val_accuracy < bound - DEGENERATE_MARGIN:
        return (
            f"validation accuracy {val_accuracy:.3f} is below {bound:.3f}, the least a probability "
            f"output with validation loss {val_loss:.4g} must reach (2·e^-loss - 1): the cost "
            "falls without the classifier improving"
        )
    return None


def _tensor(x) -> tf.Tensor:
    return x if isinstance(x, tf.Tensor) else tf.convert_to_tensor(x, tf.float32)


def _finite(net: Network) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(w))) for w in net.weights)


def fit_network(
    net: Network,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    on_epoch: Callable[[dict], None] = lambda record: None,
) -> dict:
    """Train `net` (its weights are updated); return its history, status and the status's reason.

    status: `ok`, `diverged` (cost or weights stopped being finite; training stopped there) or
    `degenerate` (finished, but the cost contradicts the accuracy: see degenerate_reason).

    x_*: (n, inputs) float32, e.g. (n, 784) pixels in [0, 1]; y_*: (n,) integer labels. Each
    epoch shuffles the training set with a generator seeded by `seed` and drops the last partial
    batch (as the tutorial's int(num_examples / batch_size) steps do).
    """
    n = len(x_train)
    if cfg.batch_size > n:
        raise ValueError(f"train.batch_size = {cfg.batch_size} exceeds the {n} training images")
    n_batches = n // cfg.batch_size
    # No copy when given tensors already (train_network keeps them across networks, as uint8
    # pixels where it can: see as_pixels).
    x, y = _tensor(x_train), one_hot(y_train, net.n_classes)
    xv, yv = _tensor(x_val), one_hot(y_val, net.n_classes)
    graphs = _graphs_for(net)
    slot = graphs.load(net)
    run_epoch, score = graphs.epoch(cfg, n_batches), graphs.score
    rng = np.random.default_rng(seed)
    hyper = [tf.constant(v, tf.float32) for v in (cfg.learning_rate, cfg.lr_decay, cfg.momentum)]
    # Compile both now (an epoch of no steps) so the first epoch's time measures training only.
    no_order = tf.zeros([n_batches * cfg.batch_size], tf.int32)
    run_epoch(x, y, no_order, *hyper, tf.constant(0), tf.constant(0))
    score.get_concrete_function(xv, yv)

    history: list[dict] = []
    status, diverged_epoch = "ok", None
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)[: n_batches * cfg.batch_size].astype(np.int32)
        step0 = tf.constant(epoch * n_batches, tf.int32)
        start = time.perf_counter()
        cost_t, lr_t = run_epoch(x, y, tf.constant(order), *hyper, step0, tf.constant(n_batches))
        cost, lr = float(cost_t), float(lr_t)
        seconds = time.perf_counter() - start
        val_loss, val_acc = (float(t) for t in score(xv, yv))
        record = {
            "epoch": epoch,
            "cost": cost,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "learning_rate": lr,
            "epoch_seconds": seconds,
        }
        history.append(record)
        on_epoch(record)
        if not math.isfinite(cost) or not _finite(slot):
            status, diverged_epoch = "diverged", epoch
            reason = f"the cost stopped being finite ({cost}) in epoch {epoch}"
            break
    else:
        reason = degenerate_reason(history[-1]["val_loss"], history[-1]["val_accuracy"])
        if reason:
            status = "degenerate"
    graphs.store(net)
    return {
        "status": status,
        "reason": reason or "",
        "diverged_epoch": diverged_epoch,
        "history": history,
    }


def as_pixels(x: np.ndarray, rows: int = 5_000) -> tf.Tensor:
    """Images as a tensor: uint8 when every value is k/255 (8-bit pixels scaled to [0, 1]).

    TensorFlow keeps about twice a constant's size (55,000 float32 images: 341 MB resident; as
    uint8: 86 MB). `_features` turns the bytes back into exactly the same float32 values per
    batch (the same float32 division), so training sees identical numbers. Anything else
    (standardised inputs, XOR points) stays float32. Checked in slices of `rows` to keep the
    temporary copies small.
    """
    pixels = np.empty(x.shape, np.uint8)
    for i in range(0, len(x), rows):
        chunk = x[i : i + rows]
        scaled = np.rint(chunk * np.float32(255))
        if not (
            np.all((scaled >= 0) & (scaled <= 255))
            and np.array_equal(scaled.astype(np.uint8).astype(np.float32) / np.float32(255), chunk)
        ):
            return tf.constant(x, tf.float32)
        pixels[i : i + rows] = scaled.astype(np.uint8)
    return tf.constant(pixels)


# The divisor of byte pixels, as a variable: Grappler rewrites division by a constant, x / 255,
# as x * (1 / 255), which rounds a third of the values differently from numpy's x / 255.
_PIXEL_MAX = tf.Variable(255.0, trainable=False, name="pixel_max")


def _features(x: tf.Tensor) -> tf.Tensor:
    """float32 inputs from what as_pixels kept: exactly the values preprocessing wrote."""
    return tf.cast(x, tf.float32) / _PIXEL_MAX if x.dtype == tf.uint8 else x


@functools.lru_cache(maxsize=1)
def _training_data(data_path: str) -> tuple:
    """x_train, y_train, x_val, y_val of one .npz, images as tensors, kept for the next network.

    One copy per process instead of one per network: loading the 55,000 images anew for each of
    the grid's networks left the allocator holding several copies (peak RSS 1.9 GB, default grid).
    """
    with np.load(data_path, allow_pickle=False) as npz:
        x_train, y_train = as_pixels(npz["x_train"]), npz["y_train"]
        x_val, y_val = as_pixels(npz["x_val"]), npz["y_val"]
        n_classes = int(npz["n_classes"])
    return (x_train, y_train, x_val, y_val), n_classes


def _summary(cell: Cell, run_id: str, init: str, fit: dict, weights_path: Path) -> dict:
    history = fit["history"]
    costs = [h["cost"] for h in history]
    return {
        "model": cell.model,
        "activation": cell.activation,
        "seed": cell.seed,
        "init": init,
        "run_id": run_id,
        "status": fit["status"],
        "reason": fit["reason"],
        "diverged_epoch": fit["diverged_epoch"],
        "epochs_run": len(history),
        "costs": costs,
        "final_cost": costs[-1] if costs else math.nan,
        "seconds_per_epoch": float(np.mean([h["epoch_seconds"] for h in history])),
        "weights_path": str(weights_path),
    }


@task(name="train_network", cache_policy=NO_CACHE)
def train_network(
    data_path: str,
    cell: Cell,
    models: ModelsConfig,
    train: TrainConfig,
    run: tracking.RunContext,
    data_dir: Path,
) -> dict:
    """Train one grid cell in its own child MLflow run; return a small summary dict."""
    tf.keras.utils.set_random_seed(cell.seed)
    data, n_classes = _training_data(data_path)
    net = build_network(
        cell.model, cell.activation, models, cell.seed, int(data[0].shape[1]), n_classes
    )
    client = tracking.client(run)
    run_id = tracking.start_child_run(
        client, run, cell, tracking.child_params(cell, net, models, train)
    )
    try:
        fit = fit_network(
            net, *data, train, cell.seed,
            on_epoch=lambda record: tracking.log_epoch(client, run_id, record),
        )  # fmt: skip
        path = weights_dir(data_dir) / f"{run_id}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, *net.numpy_weights())
        tracking.log_training_outcome(client, run_id, fit)
    except tracking.INTERRUPTS:
        tracking.end_run(client, run_id, "KILLED")
        raise
    except BaseException:
        tracking.end_run(client, run_id, "FAILED")
        raise
    return _summary(cell, run_id, net.init, fit, path)
