"""Several networks of one shape trained at once: one XLA program per epoch for all of them.

Networks with the same layer sizes trained with the same settings and seed see the same shuffled
batches. `fit_stacked` trains them together: each step gathers its batch once, then runs every
network's forward pass, backward pass and update in the same compiled program. Each network
gets back exactly what `tasks.training.loop.fit_network` would have given it alone, bit for bit
(tests/tasks/training/test_stack.py checks costs, validation metrics and weights): its status,
reason, diverged epoch, first non-finite tensor, history and diagnostics.

A network that diverges stops at the end of the epoch in which it did, as it would alone: its
weights stay those of the end of that epoch, and its epoch is replayed step by step, for it alone,
to name the first tensor that stopped being finite. The others go on in a program compiled without
it. (A per-network switch inside one program would spare that compilation, but XLA then rounds
the logged cost differently in the last bit: the weights stay the same, the costs do not. Going on
computing the stopped network unread costs more than compiling: a 784-10 network's epoch is
~0.05 s, and the tutorial's grid stops seven of ten in their first epoch.)

A group's compiled programs are kept for the next group of the same networks, in whatever order
it lists them (the networks are trained in one canonical order): the next seed's round of the
same activations traces and compiles nothing.

The one difference is time: a stacked epoch's seconds are shared equally among the networks it
trained, so the sum of `epoch_seconds` over the networks is still the time spent training.
"""

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tasks.core.config import TrainConfig
from tasks.training.diagnostics import SECONDS, compile_probes, layer_diagnostics
from tasks.training.inputs import as_tensor, features, one_hot
from tasks.training.loop import (
    NO_ROWS,
    any_number_of,
    compile_scores,
    degenerate_reason,
    divergence,
    probe_images,
)
from tasks.training.models import Network
from tasks.training.optim import apply_update, learning_rate, make_state, reset_state


def _compile_stacked_epoch(slots: list[Network], states: list[list], cfg: TrainConfig, n_batches):
    """One epoch of every network in `slots` as a single XLA computation: each step gathers its
    batch once, then makes, network after network, the step `loop._compile_epoch` makes. Returns
    each network's mean cost over the epoch (a list, one scalar each) and the mean learning rate.

    No op joins two networks' tensors: each keeps its own running total, as fit_network does.
    Summing the costs into one vector (tf.stack) let XLA fuse the networks' cost reductions into
    one kernel, which rounded the logged cost of some networks differently in the last bit (with
    ten networks, not with eight); the weights were the same either way.
    """
    optimizer, schedule, batch_size = cfg.optimizer, cfg.schedule, cfg.batch_size

    @tf.function(jit_compile=True, autograph=False)  # the loop is tf.while_loop already
    def run_epoch(x, y, order, lr0, decay, momentum, step0, steps):
        # steps: n_batches to train an epoch; 0 compiles the computation and changes nothing.
        def step_once(i, totals, lr_total):
            idx = tf.slice(order, [i * batch_size], [batch_size])
            xb = features(tf.gather(x, idx))  # (batch, inputs), once for every network
            yb = tf.gather(y, idx)  # (batch, classes)
            step = step0 + i
            lr = learning_rate(schedule, lr0, decay, step, n_batches)
            summed = []
            for net, state, total in zip(slots, states, totals, strict=True):
                with tf.GradientTape() as tape:
                    cost = net.cost(net.output(xb), yb)  # before this step's update, as logged
                grads = tape.gradient(cost, net.weights)
                apply_update(optimizer, net.weights, grads, state, lr, step, momentum)
                summed.append(total + cost)
            return i + 1, summed, lr_total + lr

        start = (tf.constant(0), [tf.constant(0.0) for _ in slots], tf.constant(0.0))
        _, totals, lr_total = tf.while_loop(lambda i, *_: i < steps, step_once, start)
        n = tf.cast(n_batches, tf.float32)
        return [total / n for total in totals], lr_total / n

    return run_epoch


@dataclass
class _Stack:
    """Compiled graphs for one list of network shapes, with the variables they train (slots):
    the networks' weights are copied in, trained there, copied back (as loop._Graphs does)."""

    slots: list[Network]
    score: Callable  # every slot's validation in one call (loop.compile_scores)
    epochs: dict[tuple, Callable] = field(default_factory=dict)
    states: dict[str, list[list[tf.Variable]]] = field(default_factory=dict)
    probe: Callable | None = None  # every slot's diagnostics in one call, made on first use

    def start(self, cfg: TrainConfig) -> list[list[tf.Variable]]:
        """Each slot's optimiser state for `cfg`, zeroed for a new run."""
        if cfg.optimizer not in self.states:
            self.states[cfg.optimizer] = [make_state(cfg.optimizer, s.weights) for s in self.slots]
        for state in self.states[cfg.optimizer]:
            reset_state(state)
        return self.states[cfg.optimizer]

    def epoch(self, cfg: TrainConfig, n_batches: int, trained: tuple[int, ...]) -> Callable:
        """The compiled epoch of the slots numbered `trained` (the networks still training)."""
        key = (cfg.batch_size, n_batches, cfg.optimizer, cfg.schedule, trained)
        if key not in self.epochs:
            slots = [self.slots[k] for k in trained]
            states = [self.states[cfg.optimizer][k] for k in trained]
            self.epochs[key] = _compile_stacked_epoch(slots, states, cfg, n_batches)
        return self.epochs[key]

    def diagnostics(self) -> Callable:
        if self.probe is None:
            self.probe = compile_probes(self.slots)
        return self.probe

    def load(self, nets: Sequence[Network]) -> None:
        for slot, net in zip(self.slots, nets, strict=True):
            for s, w in zip(slot.weights, net.weights, strict=True):
                s.assign(w)

    def store(self, nets: Sequence[Network]) -> None:
        for slot, net in zip(self.slots, nets, strict=True):
            for w, s in zip(net.weights, slot.weights, strict=True):
                w.assign(s)


# Per thread, as loop._LOCAL: two tasks training at once must not share slots.
_LOCAL = threading.local()


def _slot_key(net: Network) -> tuple:
    return (net.model, net.activation, net.leaky_slope, tuple(tuple(w.shape) for w in net.weights))


def _stack_for(nets: Sequence[Network]) -> _Stack:
    stacks: dict[tuple, _Stack] = _LOCAL.__dict__.setdefault("stacks", {})
    key = tuple(_slot_key(n) for n in nets)
    if key not in stacks:
        slots = [
            Network(n.model, n.activation, n.init, _copy(n.weights), n.leaky_slope) for n in nets
        ]
        stacks[key] = _Stack(slots=slots, score=compile_scores(slots))
    return stacks[key]


def _canonical(nets: Sequence[Network]) -> list[int]:
    """The order a group's networks are trained (and scored) in, whatever order the caller lists
    them: so that the next group of the same networks finds this one's compiled graphs."""
    return sorted(range(len(nets)), key=lambda k: _slot_key(nets[k]))


def _in_callers_order(canonical: list[int], items: list) -> list:
    """`items`, one per network in the canonical order, put back in the caller's order."""
    by_caller = sorted(zip(canonical, items, strict=True), key=lambda pair: pair[0])
    return [item for _, item in by_caller]


def _copy(weights: list[tf.Variable]) -> list[tf.Variable]:
    return [tf.Variable(w) for w in weights]


def _check(nets: Sequence[Network], on_epoch) -> None:
    if not nets:
        raise ValueError("fit_stacked needs at least one network")
    sizes = {tuple(n.layer_sizes) for n in nets}
    if len(sizes) > 1:
        found = ", ".join("-".join(map(str, s)) for s in sorted(sizes))
        raise ValueError(f"stacked networks must have the same layer sizes; found {found}")
    if len({id(n) for n in nets}) < len(nets):
        raise ValueError("a network is listed more than once: each trains in its own slot")
    if on_epoch is not None and len(on_epoch) != len(nets):
        raise ValueError(
            f"on_epoch holds {len(on_epoch)} callbacks for {len(nets)} networks: give one each"
        )


def fit_stacked(
    nets: Sequence[Network],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    on_epoch: Sequence[Callable[[dict], None]] | None = None,
) -> list[dict]:
    """Train `nets` (same layer sizes; their weights are updated) together, as `fit_network`
    would train each alone with these data, `cfg` and `seed`; return fit_network's result for
    each, in order. `on_epoch[k]` is called with each of network k's epoch records as it ends.
    """
    _check(nets, on_epoch)
    callbacks = list(on_epoch) if on_epoch is not None else [lambda record: None] * len(nets)
    # Trained in one canonical order (each network's results are its own whatever the order), so
    # that the next group of the same networks finds this one's compiled programs; the results
    # are handed back in the caller's order.
    canonical = _canonical(nets)
    nets, callbacks = [nets[k] for k in canonical], [callbacks[k] for k in canonical]
    n = len(x_train)
    if cfg.batch_size > n:
        raise ValueError(f"train.batch_size = {cfg.batch_size} exceeds the {n} training images")
    n_batches = n // cfg.batch_size
    n_classes = nets[0].n_classes
    x, y = as_tensor(x_train), one_hot(y_train, n_classes)
    xv, yv = as_tensor(x_val), one_hot(y_val, n_classes)
    stack = _stack_for(nets)
    stack.load(nets)
    slots, states = stack.slots, stack.start(cfg)
    rng = np.random.default_rng(seed)
    hyper = [tf.constant(v, tf.float32) for v in (cfg.learning_rate, cfg.lr_decay, cfg.momentum)]
    no_order = tf.zeros([n_batches * cfg.batch_size], tf.int32)

    def compiled(trained: tuple[int, ...]) -> Callable:
        """The epoch of the networks `trained`, compiled now (an epoch of no steps) so that the
        first epoch it trains measures training only."""
        run_epoch = stack.epoch(cfg, n_batches, trained)
        run_epoch(x, y, no_order, *hyper, tf.constant(0), tf.constant(0))
        return run_epoch

    active = [True] * len(nets)
    run_epoch = compiled(tuple(range(len(nets))))
    stack.score.get_concrete_function(*any_number_of(xv, yv), NO_ROWS)  # for the test split too
    probe = stack.diagnostics() if cfg.diagnostics and nets[0].n_hidden else None
    rows = NO_ROWS
    if probe is not None:
        xp, yp, rows = probe_images(cfg, xv, yv)
        if not probe.experimental_get_tracing_count():
            # traced and run once now, as fit_network does
            probe(xp, yp, [first for *_, first in stack.score(xp, yp, rows)])

    results = [
        {"status": "ok", "reason": "", "diverged_epoch": None, "nonfinite": None, "history": []}
        for _ in nets
    ]

    def starting(trained: tuple[int, ...]) -> tuple[np.ndarray, dict, dict]:
        """An epoch's shuffled order, and where its networks start from (to replay one that
        diverges in it)."""
        order = rng.permutation(n)[: n_batches * cfg.batch_size].astype(np.int32)
        weights = {k: [w.numpy() for w in slots[k].weights] for k in trained}
        return order, weights, {k: [s.numpy() for s in states[k]] for k in trained}

    upcoming = starting(tuple(range(len(nets))))
    for epoch in range(cfg.epochs):
        trained = tuple(k for k, on in enumerate(active) if on)
        if not trained:
            break
        order, start_weights, start_state = upcoming
        step0 = tf.constant(epoch * n_batches, tf.int32)
        start = time.perf_counter()
        costs_t, lr_t = run_epoch(x, y, tf.constant(order), *hyper, step0, tf.constant(n_batches))
        costs, lr = [float(c) for c in costs_t], float(lr_t)
        seconds = (time.perf_counter() - start) / len(trained)  # the epoch's time, shared
        # Everything measured on every network before any record is handed on: the callbacks'
        # writes (MLflow's, on their own thread) then overlap the next epoch, not these calls.
        scores = stack.score(xv, yv, rows)
        checked = [(float(loss), float(acc), bool(ok)) for loss, acc, _, ok, _ in scores]
        measured = None
        if probe is not None:
            begin = time.perf_counter()
            measured = [layer_diagnostics(m) for m in probe(xp, yp, [s[-1] for s in scores])]
            probe_seconds = (time.perf_counter() - begin) / len(trained)  # shared, as above
        if epoch + 1 < cfg.epochs:
            # The next epoch's start, taken before the records are handed on too: MLflow's writer
            # thread would hold the GIL these copies wait for (0.11 s instead of 0.03 s for the
            # mlp's nine over ten epochs). A network that stops in this epoch leaves its unused.
            upcoming = starting(trained)
        for k, cost in zip(trained, costs, strict=True):
            slot, result = slots[k], results[k]
            val_loss, val_acc, weights_finite = checked[k]
            record = {
                "epoch": epoch,
                "cost": cost,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "learning_rate": lr,
                "epoch_seconds": seconds,
            }
            if measured is not None:
                record["diagnostics"] = {**measured[k], SECONDS: probe_seconds}
            result["history"].append(record)
            callbacks[k](record)
            if not math.isfinite(cost) or not weights_finite:
                active[k] = False
                result["status"], result["diverged_epoch"] = "diverged", epoch
                result["nonfinite"], result["reason"] = divergence(
                    slot, cost, start_weights[k], start_state[k], x, y, order, cfg, epoch, n_batches
                )
        still = tuple(k for k, on in enumerate(active) if on)
        if still != trained and still and epoch + 1 < cfg.epochs:
            # A network stopped: the others go on in a program without it (compiled anew: a
            # per-network switch inside one program changes how XLA rounds the logged cost).
            run_epoch = compiled(still)
    for k, result in enumerate(results):
        if active[k]:
            last = result["history"][-1]
            reason = degenerate_reason(last["val_loss"], last["val_accuracy"])
            if reason:
                result["status"], result["reason"] = "degenerate", reason
    stack.store(nets)
    return _in_callers_order(canonical, results)


def score_stacked(
    nets: Sequence[Network], x: np.ndarray | tf.Tensor, labels: np.ndarray
) -> list[tuple[dict[str, float], np.ndarray]]:
    """`loop.predict_and_score` for each of `nets` (the same layer sizes), in one call of the
    graph that scored them on validation when they trained together: ({"loss", "accuracy"}, (n,)
    predicted classes) each, in order, the same to the bit as each scored alone. For the mlp's
    nine on the 10,000 test images, 0.11 s instead of 0.14 s."""
    _check(nets, None)
    canonical = _canonical(nets)
    ordered = [nets[k] for k in canonical]
    stack = _stack_for(ordered)
    stack.load(ordered)
    y = one_hot(labels, ordered[0].n_classes)
    out = [
        ({"loss": float(loss), "accuracy": float(acc)}, predicted.numpy())
        for loss, acc, predicted, _, _ in stack.score(as_tensor(x), y, NO_ROWS)
    ]
    return _in_callers_order(canonical, out)
