"""Training one network by mini-batch gradient descent, a whole epoch in one XLA computation.

`fit_network` is the maths: no files, no MLflow (its `on_epoch` callback is how `tasks.steps` logs
each epoch as it ends).

By default the learning rate used in epoch e is learning_rate * (1 - lr_decay)^e: the per-epoch
decay the tutorial meant (its own update line multiplies by the constant (1 - lr_decay) and never
uses the decayed rate); `tasks.training.optim` has the other schedules and optimisers. The rate
recorded per epoch is the mean of the rates its steps used. A cost or weight that stops being
finite ends the run as `diverged` at that epoch, and that epoch is replayed step by step to name
the first tensor that stopped being finite. With `train.diagnostics`, each epoch's record also
carries the per-hidden-layer diagnostics of `tasks.training.diagnostics`.
"""

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tasks.core.config import TrainConfig
from tasks.training.diagnostics import SECONDS, compile_probes, first_nonfinite, layer_diagnostics
from tasks.training.inputs import as_tensor, features, one_hot
from tasks.training.models import Network
from tasks.training.optim import apply_update, learning_rate, make_state, reset_state

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

    @tf.function(jit_compile=True, autograph=False)  # the loop is tf.while_loop already
    def run_epoch(x, y, order, lr0, decay, momentum, step0, steps) -> tuple[tf.Tensor, tf.Tensor]:
        # steps: n_batches to train an epoch; 0 compiles the computation and changes nothing.
        # A while loop, not a loop over tf.range(steps): XLA would take the range's length as a
        # compile-time constant and compile anew for each value.
        def step_once(i, total, lr_total):
            idx = tf.slice(order, [i * batch_size], [batch_size])  # static size, as XLA needs
            xb = features(tf.gather(x, idx))  # (batch, inputs)
            yb = tf.gather(y, idx)  # (batch, classes)
            step = step0 + i
            lr = learning_rate(schedule, lr0, decay, step, n_batches)
            with tf.GradientTape() as tape:
                cost = net.cost(net.output(xb), yb)  # before this step's update, as logged
            grads = tape.gradient(cost, net.weights)
            apply_update(optimizer, net.weights, grads, state, lr, step, momentum)
            return i + 1, total + cost, lr_total + lr

        start = (tf.constant(0), tf.constant(0.0), tf.constant(0.0))
        _, total, lr_total = tf.while_loop(lambda i, *_: i < steps, step_once, start)
        n = tf.cast(n_batches, tf.float32)
        return total / n, lr_total / n

    return run_epoch


def scored_output(net: Network, out: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """(cost, accuracy, (n,) predicted classes) of `net` from its output `out` (net.output, or
    the last of net.forward's layers) with one-hot `y`: the ops of the scoring graph
    (compile_scores)."""
    predicted = tf.argmax(out, axis=1)
    hits = tf.equal(predicted, tf.argmax(y, axis=1))
    return net.cost(out, y), tf.reduce_mean(tf.cast(hits, tf.float32)), predicted


def any_number_of(*tensors: tf.Tensor) -> list[tf.TensorSpec]:
    """Specs of `tensors` with any number of rows: a scoring graph traced with them serves the
    validation and the test split alike. Traced for the validation split's shape, it was traced
    again when the test split came (reduce_retracing then relaxes the shape): 0.26 s for the
    tutorial's ten networks, paid by the first group of each shape."""
    return [tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in tensors]


def compile_scores(nets: Sequence[Network]) -> Callable:
    """Each of `nets`' (cost, accuracy, (n,) predicted classes, whether its weights are all
    finite, its first layer's pre-activation x·W + b of the first `rows` images) on a labelled
    set, in one graph, the inputs turned into floats once: one network's validation and test
    split (loop), or several networks' in one call (stack), with the same ops each.

    The `rows` are the diagnostics probe's (`train.probe_size` validation images; 0: none, as
    for the test split): the probe graph takes their x·W + b from here instead of computing it
    again (diagnostics.compile_probes). A network without a hidden layer hands none on."""

    @tf.function(reduce_retracing=True, autograph=False)  # one graph for any number of images
    def score(x: tf.Tensor, y: tf.Tensor, rows: tf.Tensor) -> list[tuple[tf.Tensor, ...]]:
        inputs = features(x)
        out = []
        for net in nets:
            layers = net.forward(inputs)
            first = layers[0][0][:rows] if net.n_hidden else tf.zeros([0])
            out.append((*scored_output(net, layers[-1][1], y), all_finite(net), first))
        return out

    return score


NO_ROWS = tf.constant(0)  # compile_scores' rows when no probe follows (the test split)


def probe_images(cfg: TrainConfig, xv: tf.Tensor, yv: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """The diagnostics probe's images and one-hot labels, the first `train.probe_size` of the
    validation split (all of them when there are fewer), and their number: the `rows` of the
    validation pass (compile_scores) that hands the probe their first layer."""
    xp, yp = xv[: cfg.probe_size], yv[: cfg.probe_size]
    return xp, yp, tf.constant(len(xp))


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
    probe: Callable | None = None  # the diagnostics graph, made on first use

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

    def diagnostics(self) -> Callable:
        """The per-hidden-layer diagnostics of the slot's network (tasks.training.diagnostics)."""
        if self.probe is None:
            self.probe = compile_probes([self.slot])
        return self.probe

    def load(self, net: Network) -> Network:
        for s, w in zip(self.slot.weights, net.weights, strict=True):
            s.assign(w)
        return self.slot

    def store(self, net: Network) -> None:
        for w, s in zip(net.weights, self.slot.weights, strict=True):
            w.assign(s)


# Compiled graphs per thread: two tasks training at once in a thread pool must not share a slot.
# Held by a threading.local, so a thread's graphs are released when the thread ends (a long-lived
# `actlab serve` starts new worker threads for each flow run).
_LOCAL = threading.local()


def _graphs_for(net: Network) -> _Graphs:
    graphs: dict[tuple, _Graphs] = _LOCAL.__dict__.setdefault("graphs", {})
    shapes = tuple(tuple(w.shape) for w in net.weights)
    key = (net.model, net.activation, net.leaky_slope, shapes)
    if key not in graphs:
        variables = [tf.Variable(w) for w in net.weights]
        slot = Network(net.model, net.activation, net.init, variables, net.leaky_slope)
        graphs[key] = _Graphs(slot=slot, score=compile_scores([slot]))
    return graphs[key]


def score_network(net: Network, x, labels) -> dict[str, float]:
    """Loss (the model's own cost) and accuracy on a labelled set (x: array or tensor)."""
    return predict_and_score(net, x, labels)[0]


def predict_and_score(net: Network, x, labels) -> tuple[dict[str, float], np.ndarray]:
    """({"loss", "accuracy"}, (n,) predicted classes) on a labelled set, in one pass of the
    network's compiled scoring graph (the one validation uses every epoch)."""
    graphs = _graphs_for(net)
    graphs.load(net)
    ((loss, acc, predicted, _, _),) = graphs.score(
        as_tensor(x), one_hot(labels, net.n_classes), NO_ROWS
    )
    return {"loss": float(loss), "accuracy": float(acc)}, predicted.numpy()


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


def finite(net: Network) -> bool:
    """Whether every weight of `net` is finite."""
    return bool(all_finite(net))


def all_finite(net: Network) -> tf.Tensor:
    """Whether every weight of `net` is finite, as an op (a scalar bool) a graph can return."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(w)) for w in net.weights])


def divergence(slot, cost, start_weights, start_state, x, y, order, cfg, epoch, n_batches):
    """(nonfinite, reason) of a network that diverged in `epoch`: its epoch replayed step by
    step from where it started (diagnostics.first_nonfinite) to name the first non-finite tensor."""
    if math.isfinite(cost):
        reason = f"the weights stopped being finite in epoch {epoch}"
    else:
        reason = f"the cost stopped being finite ({cost}) in epoch {epoch}"
    nonfinite = first_nonfinite(
        slot, start_weights, start_state, x, y, order, cfg, epoch, n_batches
    )
    if nonfinite is None:
        reason += (
            "; a step-by-step replay of the epoch stayed finite (it runs plain "
            "TensorFlow, which rounds differently from the compiled epoch)"
        )
    else:
        reason += "; " + nonfinite.sentence()
    return nonfinite, reason


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
    nonfinite: for a diverged run, where it first held a NaN or an infinity (a NonFinite), or
    None. Each history record: epoch, cost, val_loss, val_accuracy, learning_rate,
    epoch_seconds, and with cfg.diagnostics (and a hidden layer) "diagnostics": {metric: value}.

    x_*: (n, inputs) float32, e.g. (n, 784) pixels in [0, 1]; y_*: (n,) integer labels. Each
    epoch shuffles the training set with a generator seeded by `seed` and drops the last partial
    batch (as the tutorial's int(num_examples / batch_size) steps do).
    """
    n = len(x_train)
    if cfg.batch_size > n:
        raise ValueError(f"train.batch_size = {cfg.batch_size} exceeds the {n} training images")
    n_batches = n // cfg.batch_size
    # No copy when given tensors already (tasks.steps.train_network keeps them across networks,
    # as uint8 pixels where it can: see inputs.as_pixels).
    x, y = as_tensor(x_train), one_hot(y_train, net.n_classes)
    xv, yv = as_tensor(x_val), one_hot(y_val, net.n_classes)
    graphs = _graphs_for(net)
    slot = graphs.load(net)
    run_epoch, score = graphs.epoch(cfg, n_batches), graphs.score
    state = graphs.states[cfg.optimizer]
    rng = np.random.default_rng(seed)
    hyper = [tf.constant(v, tf.float32) for v in (cfg.learning_rate, cfg.lr_decay, cfg.momentum)]
    # Compile both now (an epoch of no steps) so the first epoch's time measures training only.
    no_order = tf.zeros([n_batches * cfg.batch_size], tf.int32)
    run_epoch(x, y, no_order, *hyper, tf.constant(0), tf.constant(0))
    score.get_concrete_function(*any_number_of(xv, yv), NO_ROWS)  # the test split's graph too
    # The probe: the first probe_size validation images, the same for every network. It reads
    # the weights after each epoch and writes nothing, so training is the same without it.
    probe = graphs.diagnostics() if cfg.diagnostics and net.n_hidden else None
    rows = NO_ROWS
    if probe is not None:
        xp, yp, rows = probe_images(cfg, xv, yv)
        # traced and run once now, so the first epoch's figure is not the tracing
        probe(xp, yp, [first for *_, first in score(xp, yp, rows)])

    history: list[dict] = []
    status, diverged_epoch, nonfinite = "ok", None, None
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)[: n_batches * cfg.batch_size].astype(np.int32)
        # Where this epoch starts from, to replay it if it diverges (a copy: well under 1 ms).
        start_weights = [w.numpy() for w in slot.weights]
        start_state = [s.numpy() for s in state]
        step0 = tf.constant(epoch * n_batches, tf.int32)
        start = time.perf_counter()
        cost_t, lr_t = run_epoch(x, y, tf.constant(order), *hyper, step0, tf.constant(n_batches))
        cost, lr = float(cost_t), float(lr_t)
        seconds = time.perf_counter() - start
        ((val_loss_t, val_acc_t, _, _, first),) = score(xv, yv, rows)
        val_loss, val_acc = float(val_loss_t), float(val_acc_t)
        record = {
            "epoch": epoch,
            "cost": cost,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "learning_rate": lr,
            "epoch_seconds": seconds,
        }
        if probe is not None:
            start = time.perf_counter()
            (measured,) = probe(xp, yp, [first])
            record["diagnostics"] = layer_diagnostics(measured)
            record["diagnostics"][SECONDS] = time.perf_counter() - start
        history.append(record)
        on_epoch(record)
        if not math.isfinite(cost) or not finite(slot):
            status, diverged_epoch = "diverged", epoch
            nonfinite, reason = divergence(
                slot, cost, start_weights, start_state, x, y, order, cfg, epoch, n_batches
            )
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
        "nonfinite": nonfinite,
        "history": history,
    }
