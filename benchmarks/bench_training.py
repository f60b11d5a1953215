"""Seconds per training epoch: the project's loop against the code people would otherwise write.

On the same data (55,000 training images, batch 100, plain SGD at 0.1, no decay) and from the same
starting weights, in one process, for the tutorial's 784-10 network and a 784-256-10 ReLU MLP:

  project     tasks.train.fit_network (a whole epoch as one XLA computation)
  keras_fit   the obvious Keras code: Sequential + compile(SGD) + fit
  tf1_loop    the tutorial's own TF1 code via tf.compat.v1: one Session.run per batch
  numpy_loop  plain NumPy/BLAS mini-batch SGD with a hand-written backward pass

The four run round-robin, one epoch each per round, so a passing load on the machine slows them
alike. Seconds per epoch is the median over epochs 2..E (the first may include one-time costs).
Then what the per-layer diagnostics (`train.diagnostics`) cost on 784-256-10: the project's loop
with them on and off, round-robin, as a ratio of training time (target <= 1.05). Then the whole
flow (`actlab run`, start-up included) against the bare TF1 loop training the same networks.

Then the whole run (benchmarks/whole_run.py), each `actlab run` a subprocess read back from the
MLflow store it wrote: the default grid's wall time against its Σ epoch_seconds, the command's
start to the first epoch, the overhead per network, networks per minute on a 100-network grid,
peak memory; and (benchmarks/cluster.py) that grid on one and on two single-threaded Dask workers.
It ends with every measure that has a target (the per-epoch ratios, the diagnostics' cost and
the whole run's), each against it, PASS or FAIL.

  python benchmarks/bench_training.py [--data FOLDER] [--epochs E] [--skip-flow]
                                      [--parts speed,diagnostics,flow,whole,dask]
"""

import argparse
import contextlib
import gc
import gzip
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# This checkout's project code, and `benchmarks.*`, also when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # less of TensorFlow's C++ start-up chatter

import keras
import numpy as np
import tensorflow as tf

from benchmarks.cluster import ONE_THREAD, Cluster, project_env
from benchmarks.whole_run import (
    GIB,
    Child,
    CpuSampler,
    Finished,
    Overheads,
    Target,
    compare_results,
    describe_comparison,
    epoch_total,
    judged,
    networks_per_minute,
    run_actlab,
    seconds_to_first_epoch,
    target_line,
    training_span,
)
from tasks.core.config import (
    DataConfig,
    MlpModelConfig,
    ModelsConfig,
    PreprocessConfig,
    TrainConfig,
)
from tasks.core.paths import IDX_FILES
from tasks.data.download import fetch_dataset
from tasks.data.prepare import preprocess_dataset
from tasks.training.inputs import as_pixels
from tasks.training.loop import fit_network
from tasks.training.models import Network, build_network

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
VAL_SIZE = 5_000  # held out from the start of the training file, as the project's preprocess does
BATCH = 100
LR = 0.1
SEED = 0
N_CLASSES = 10
# The tutorial's output activations swept in the flow part, for the bare TF1 loop.
FLOW_ACTIVATIONS = {
    "softmax": tf.nn.softmax,
    "sigmoid": tf.sigmoid,
    "relu": tf.nn.relu,
    "tanh": tf.tanh,
}
FLOW_EPOCHS = 10
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # slow a current numpy when set
ACTLAB = Path(sys.executable).parent / "actlab"
PARAMS = ROOT / "params.yaml"

# The whole run's targets (issue 14), on the 2-core machine, each from one `make bench`.
WALL_PER_EPOCH_TIME = Target(2.0)  # default grid: command wall / Σ epoch_seconds
FLOW_PER_BARE = Target(1.8)  # tutorial networks: whole flow / bare TF1 loop
FIRST_EPOCH_SECONDS = Target(7.0)  # command start -> first epoch, ~/.prefect warm
OVERHEAD_SECONDS = Target(0.15)  # median seconds per network beyond its epochs
PEAK_GIB = Target(1.5)  # the command and its descendants at their largest
DASK_SCALING = Target(1.6, at_least=True)  # networks/min on two 1-thread workers / on one

WORKER_IMPORT = "tasks.steps"  # what a Dask worker imports to run the flow's tasks (TensorFlow too)

PARTS = ("speed", "diagnostics", "flow", "whole", "dask")
FLOW_PARTS = frozenset({"flow", "whole", "dask"})  # the parts that run `actlab run`

# A tiny command first, so that the measured runs find Prefect's database (~/.prefect) made and
# migrated, and the data already prepared, as anyone's second run does.
WARM_UP = (
    "sweep.models=[tutorial]", "sweep.activations=[softmax]", "sweep.seeds=[0]", "train.epochs=1",
)  # fmt: skip
# The 100-network grid: 10 activations x 10 seeds of the mlp, 1 epoch each: exactly 100 networks
# every time, each as short as a network gets, so what it measures is the cost around training.
# (experiments/fair.yaml is 54 networks, then up to 81 as its results decide, 5 epochs each.)
HUNDRED_ACTIVATIONS = (
    "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "softplus", "swish", "gelu", "mish",
)  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """The grids of the parts that run `actlab run`: --set overrides on params.yaml."""

    flow_activations: tuple[str, ...]  # tutorial model, against the bare TF1 loop
    flow_epochs: int
    default: tuple[str, ...]  # the default grid
    hundred: tuple[str, ...]  # the 100-network grid, also run on Dask
    hundred_label: str


def _sweep(models: str, activations: tuple[str, ...], seeds: int, epochs: int) -> tuple[str, ...]:
    return (
        f"sweep.models=[{models}]",
        f"sweep.activations=[{', '.join(activations)}]",
        f"sweep.seeds=[{', '.join(str(s) for s in range(seeds))}]",
        f"train.epochs={epochs}",
    )


FULL = Scale(
    flow_activations=tuple(FLOW_ACTIVATIONS),
    flow_epochs=FLOW_EPOCHS,
    default=(),  # params.yaml as it is
    hundred=_sweep("mlp", HUNDRED_ACTIVATIONS, seeds=10, epochs=1),
    hundred_label="mlp x 10 activations x 10 seeds, 1 epoch each",
)
# --tiny (hidden): every actlab run shrunk to seconds, to check the parts work; figures meaningless.
TINY = Scale(
    flow_activations=("softmax", "relu"),
    flow_epochs=1,
    default=("train.epochs=1", "sweep.activations=[softmax, relu]", "sweep.seeds=[0]"),
    hundred=_sweep("mlp", ("relu", "tanh"), seeds=2, epochs=1),
    hundred_label="TINY: mlp x 2 activations x 2 seeds, 1 epoch each",
)


@dataclass(frozen=True)
class Arch:
    """One network shape under test and the speed targets the project sets itself on it."""

    hidden: tuple[int, ...]
    keras_min: float  # keras_fit / project must reach at least this
    numpy_max: float | None = None  # project / numpy_loop must stay at or below this

    @property
    def name(self) -> str:
        return "-".join(str(u) for u in (784, *self.hidden, N_CLASSES))


# Issue 14's per-epoch targets, no slower than when it was filed: 784-10 <= 1.2 x NumPy and
# >= 5 x Keras; 784-256-10 >= 2.3 x Keras.
TUTORIAL = Arch(hidden=(), keras_min=5.0, numpy_max=1.2)
ARCHS = (TUTORIAL, Arch(hidden=(256,), keras_min=2.3))
DIAGNOSTICS_ARCH = ARCHS[1]  # the diagnostics probe hidden layers: 784-256-10
DIAGNOSTICS_MAX = Target(1.05)  # (training + probe) / training with the diagnostics off


@dataclass
class Data:
    x_train: np.ndarray  # (55000, 784) float32 in [0, 1]
    y_train: np.ndarray  # (55000,) uint8
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str

    def __post_init__(self) -> None:
        self.y_train_1h = np.eye(N_CLASSES, dtype=np.float32)[self.y_train]  # (55000, 10)


@dataclass
class Result:
    epoch_seconds: list[float]
    final_cost: float
    weights: list[np.ndarray]  # [W0, b0, W1, b1, ...] after training

    @property
    def seconds_per_epoch(self) -> float:
        return statistics.median(self.epoch_seconds[1:] or self.epoch_seconds)


# ---------------------------------------------------------------------------------------- data


def load_data(folder: Path, workdir: Path, description: str) -> Data:
    """The four IDX files through the project's own preprocessing (validation = the first
    VAL_SIZE training images), so every contender trains on exactly what the flow trains on."""
    raw = fetch_dataset(DataConfig(source=str(folder), dir=workdir))
    path = preprocess_dataset(raw, PreprocessConfig(val_size=VAL_SIZE), workdir)
    with np.load(path, allow_pickle=False) as npz:
        splits = [npz[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")]
    return Data(*splits, description)


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049  # IDX ubyte images (3 dims) / labels (1 dim)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes())


def write_synthetic_idx(folder: Path, n_train: int = 60_000, n_test: int = 10_000) -> Path:
    """MNIST-shaped stand-in data as real IDX files: noisy copies of 10 random class prototypes."""
    rng = np.random.default_rng(SEED)
    prototypes = (rng.integers(0, 256, (N_CLASSES, 28, 28)) * 0.6).astype(np.uint8)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, N_CLASSES, n).astype(np.uint8)
        images = prototypes[labels] + rng.integers(0, 100, (n, 28, 28), dtype=np.uint8)
        _write_idx(folder / IDX_FILES[f"{split}_images"], images)
        _write_idx(folder / IDX_FILES[f"{split}_labels"], labels)
    return folder


# ------------------------------------------------------------------------------ the contenders
#
# Each contender trains one epoch per call of `epoch(e)` and returns (wall seconds, mean cost), so
# the benchmark can run them round-robin: epoch e of every method, then epoch e + 1 of every
# method. Whatever else slows the machine for a while slows all four alike, instead of whichever
# method happened to be running then.
#
# Epoch e visits the images in the order np.random.default_rng(SEED + e).permutation (the last
# partial batch dropped): the project's fit_network shuffles that way when given the seed SEED + e,
# and the TF1 and NumPy loops take the same batches, so the three end with the same weights.
# Keras shuffles with its own generator.


def _epoch_batches(n: int, e: int):
    """Index arrays of the full batches of epoch e (the last partial one dropped)."""
    order = np.random.default_rng(SEED + e).permutation(n)
    for i in range(n // BATCH):
        yield order[i * BATCH : (i + 1) * BATCH]


def _timed(run: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    cost = run()
    return time.perf_counter() - start, cost


def initial_weights(arch: Arch) -> list[np.ndarray]:
    """The project's starting weights for this shape (zeros for 784-10), shared by everyone."""
    return build_project_network(arch).numpy_weights()


def build_project_network(arch: Arch) -> Network:
    if not arch.hidden:
        return build_network("tutorial", "softmax", ModelsConfig(), SEED)
    cfg = ModelsConfig(mlp=MlpModelConfig(hidden_units=arch.hidden))
    return build_network("mlp", "relu", cfg, SEED)


class Project:
    """tasks.train.fit_network, one epoch per call; its own epoch_seconds (compilation excluded).

    Training alone, as the other contenders do it: the per-layer diagnostics are off unless
    asked for (`bench_diagnostics` times them); with them on, `probe_seconds` holds the time the
    probe took after each epoch."""

    def __init__(
        self, data: Data, arch: Arch, init: list[np.ndarray], diagnostics: bool = False
    ) -> None:
        self.data, self.net = data, build_project_network(arch)
        self.cfg = TrainConfig(
            epochs=1, batch_size=BATCH, learning_rate=LR, lr_decay=0.0, diagnostics=diagnostics
        )
        # The images as the flow's training task holds them (uint8 where they are 8-bit pixels).
        self.x_train, self.x_val = as_pixels(data.x_train), as_pixels(data.x_val)
        self.probe_seconds: list[float] = []

    def epoch(self, e: int) -> tuple[float, float]:
        d = self.data
        fit = fit_network(
            self.net, self.x_train, d.y_train, self.x_val, d.y_val, self.cfg, SEED + e
        )
        last = fit["history"][-1]
        if "diagnostics" in last:
            self.probe_seconds.append(last["diagnostics"]["diagnostics_seconds"])
        return last["epoch_seconds"], last["cost"]

    def weights(self) -> list[np.ndarray]:
        return self.net.numpy_weights()

    def close(self) -> None:
        pass


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds = time.perf_counter() - self.start


class KerasFit:
    """The obvious Keras code; one `fit(epochs=1)` per call, timed from inside by a callback
    (the train function is traced on the first call and reused after)."""

    def __init__(self, data: Data, arch: Arch, init: list[np.ndarray]) -> None:
        keras.utils.set_random_seed(SEED)
        dense = [keras.layers.Dense(units, activation="relu") for units in arch.hidden]
        self.model = keras.Sequential(
            [keras.Input((784,)), *dense, keras.layers.Dense(N_CLASSES, activation="softmax")]
        )
        self.model.set_weights(init)
        self.model.compile(optimizer=keras.optimizers.SGD(LR), loss="categorical_crossentropy")
        self.data, self.timer = data, _EpochTimer()

    def epoch(self, e: int) -> tuple[float, float]:
        fit = self.model.fit(
            self.data.x_train,
            self.data.y_train_1h,
            batch_size=BATCH,
            epochs=1,
            shuffle=True,
            verbose=0,
            callbacks=[self.timer],
        )
        return self.timer.seconds, fit.history["loss"][-1]

    def weights(self) -> list[np.ndarray]:
        return self.model.get_weights()

    def close(self) -> None:
        pass


class TF1Loop:
    """The tutorial's code: placeholders, tf.gradients, assign ops, one sess.run per batch.

    Built in its own Graph and Session, so the rest of the process stays in eager mode. Hidden
    layers (if any) are ReLU; `output` is the tutorial's activation on the last layer."""

    def __init__(
        self, data: Data, arch: Arch, init: list[np.ndarray], output=tf.nn.softmax
    ) -> None:
        g = tf.Graph()
        with g.as_default():
            self.x = tf.compat.v1.placeholder(tf.float32, [None, 784])
            self.y = tf.compat.v1.placeholder(tf.float32, [None, N_CLASSES])
            self.variables = [tf.Variable(w) for w in init]
            pred = self.x
            for i in range(0, len(self.variables), 2):
                act = output if i == len(self.variables) - 2 else tf.nn.relu
                pred = act(tf.matmul(pred, self.variables[i]) + self.variables[i + 1])
            self.cost = tf.reduce_mean(-tf.reduce_sum(self.y * tf.math.log(pred), axis=1))
            grads = tf.gradients(xs=self.variables, ys=self.cost)
            self.updates = [
                w.assign(w - LR * grad) for w, grad in zip(self.variables, grads, strict=True)
            ]
            init_op = tf.compat.v1.global_variables_initializer()
        self.data, self.sess = data, tf.compat.v1.Session(graph=g)
        self.sess.run(init_op)

    def epoch(self, e: int) -> tuple[float, float]:
        d, sess = self.data, self.sess

        def run() -> float:
            costs = [
                sess.run(
                    [*self.updates, self.cost], {self.x: d.x_train[i], self.y: d.y_train_1h[i]}
                )[-1]
                for i in _epoch_batches(len(d.x_train), e)
            ]
            return float(np.mean(costs))

        return _timed(run)

    def weights(self) -> list[np.ndarray]:
        return self.sess.run(self.variables)

    def close(self) -> None:
        self.sess.close()


def _forward(weights: list[np.ndarray], x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """NumPy forward pass: the inputs of every layer (x, then ReLU outputs) and the logits."""
    inputs = [x]
    for i in range(0, len(weights) - 2, 2):
        inputs.append(np.maximum(inputs[-1] @ weights[i] + weights[i + 1], 0))
    return inputs, inputs[-1] @ weights[-2] + weights[-1]


class NumpyLoop:
    """Mini-batch SGD in float32 NumPy: softmax cross-entropy, backward pass by hand."""

    def __init__(self, data: Data, arch: Arch, init: list[np.ndarray]) -> None:
        self.data, self.w = data, [w.copy() for w in init]
        self.step = np.float32(LR / BATCH)  # the batch mean and the learning rate, in one scale

    def sgd_step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        weights = self.w
        inputs, z = _forward(weights, xb)  # z: (batch, 10) logits
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z, out=z)
        p /= p.sum(axis=1, keepdims=True)  # softmax
        rows = np.arange(len(yb))
        cost = -float(np.mean(np.log(p[rows, yb])))
        grad = p  # d cost / d logits = (p - onehot) / batch, scaled by lr below
        grad[rows, yb] -= 1
        grad *= self.step
        for layer in reversed(range(len(inputs))):
            w, b, a = weights[2 * layer], weights[2 * layer + 1], inputs[layer]
            grad_w, grad_b = a.T @ grad, grad.sum(axis=0)
            if layer:  # back through this layer's weights and the ReLU that fed it
                grad = (grad @ w.T) * (a > 0)
            w -= grad_w
            b -= grad_b
        return cost

    def epoch(self, e: int) -> tuple[float, float]:
        d = self.data

        def run() -> float:
            batches = _epoch_batches(len(d.x_train), e)
            return float(np.mean([self.sgd_step(d.x_train[i], d.y_train[i]) for i in batches]))

        return _timed(run)

    def weights(self) -> list[np.ndarray]:
        return self.w

    def close(self) -> None:
        pass


CONTENDERS = {
    "project": Project,
    "keras_fit": KerasFit,
    "tf1_loop": TF1Loop,
    "numpy_loop": NumpyLoop,
}


def race(data: Data, arch: Arch, epochs: int) -> dict[str, Result]:
    """Every contender from the same initial weights, round-robin one epoch at a time; the order
    within a round rotates so that no method always follows the same one."""
    init = initial_weights(arch)
    contenders = {name: make(data, arch, init) for name, make in CONTENDERS.items()}
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    costs: dict[str, float] = {}
    names = list(contenders)
    for e in range(epochs):
        for name in names[e % len(names) :] + names[: e % len(names)]:
            s, costs[name] = contenders[name].epoch(e)
            seconds[name].append(s)
    results = {n: Result(seconds[n], costs[n], c.weights()) for n, c in contenders.items()}
    for c in contenders.values():
        c.close()
    return results


def test_accuracy(weights: list[np.ndarray], data: Data) -> float:
    _, logits = _forward(weights, data.x_test)  # argmax of logits = argmax of softmax
    return float(np.mean(logits.argmax(axis=1) == data.y_test))


# -------------------------------------------------------------------------------------- report


def _ratio_line(label: str, value: float, target: Target | None) -> str:
    bound, verdict = judged(value, target)
    return f"  {label:<20} {value:7.2f}   {bound:<22} {verdict}".rstrip()


def bench_arch(data: Data, arch: Arch, epochs: int) -> list[str]:
    """Race the four on `arch`, print the table and its ratios; return the summary's lines (each
    ratio that has a target)."""
    net_kind = "tutorial: zero init, softmax output" if not arch.hidden else "mlp: ReLU hidden"
    print(f"\n== {arch.name} ({net_kind}), {epochs} epochs, all from the same initial weights ==")
    results = race(data, arch, epochs)
    print(f"  {'method':<12} {'s/epoch':>9} {'final cost':>11} {'test acc':>9}   epochs (s)")
    for name, r in results.items():
        epochs_s = " ".join(f"{s:.3f}" for s in r.epoch_seconds)
        print(
            f"  {name:<12} {r.seconds_per_epoch:9.3f} {r.final_cost:11.4f} "
            f"{test_accuracy(r.weights, data):9.4f}   {epochs_s}"
        )
    spe = {name: r.seconds_per_epoch for name, r in results.items()}
    rows = _ratios(arch, spe)
    for row in rows:
        print(_ratio_line(*row))
    return [target_line(f"{arch.name}: {label}", value, t) for label, value, t in rows if t]


def _ratios(arch: Arch, spe: dict[str, float]) -> list[tuple[str, float, Target | None]]:
    """(label, ratio, target) for each ratio printed; target is None where there is none."""
    keras_min = Target(arch.keras_min, at_least=True)
    numpy_max = None if arch.numpy_max is None else Target(arch.numpy_max)
    return [
        ("keras_fit/project", spe["keras_fit"] / spe["project"], keras_min),
        ("tf1_loop/project", spe["tf1_loop"] / spe["project"], None),
        ("project/numpy_loop", spe["project"] / spe["numpy_loop"], numpy_max),
    ]


@dataclass
class DiagnosticsCost:
    """The project's loop with train.diagnostics on and off, from the same weights."""

    on: Result  # epoch_seconds: training only, as the loop logs it
    probe_seconds: list[float]  # the probe after each epoch of `on`
    off: Result

    @property
    def ratio(self) -> float:
        """(training + probe) with diagnostics on / training with them off: medians of 2..E."""
        total = [t + p for t, p in zip(self.on.epoch_seconds, self.probe_seconds, strict=True)]
        return statistics.median(total[1:] or total) / self.off.seconds_per_epoch

    @property
    def same_weights(self) -> bool:
        return all(
            np.array_equal(a, b) for a, b in zip(self.on.weights, self.off.weights, strict=True)
        )


def race_diagnostics(data: Data, arch: Arch, epochs: int) -> DiagnosticsCost:
    """The project with diagnostics on and off, round-robin one epoch at a time (which goes
    first alternates), from the same initial weights."""
    init = initial_weights(arch)
    on, off = Project(data, arch, init, diagnostics=True), Project(data, arch, init)
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    costs: dict[str, float] = {}
    for e in range(epochs):
        for name in ("on", "off") if e % 2 == 0 else ("off", "on"):
            s, costs[name] = (on if name == "on" else off).epoch(e)
            seconds[name].append(s)
    return DiagnosticsCost(
        on=Result(seconds["on"], costs["on"], on.weights()),
        probe_seconds=on.probe_seconds,
        off=Result(seconds["off"], costs["off"], off.weights()),
    )


def bench_diagnostics(data: Data, arch: Arch, epochs: int) -> list[str]:
    """Time the probe on `arch`; return the summary's line (its ratio against the target)."""
    print(
        f"\n== per-layer diagnostics on {arch.name} (train.diagnostics on vs off, probe of "
        f"{TrainConfig().probe_size:,} validation images), {epochs} epochs =="
    )
    cost = race_diagnostics(data, arch, epochs)
    probe = statistics.median(cost.probe_seconds[1:] or cost.probe_seconds)
    print(
        f"  on:  {cost.on.seconds_per_epoch:.3f} s/epoch training + {probe:.3f} s probe   "
        f"off: {cost.off.seconds_per_epoch:.3f} s/epoch"
    )
    print(_ratio_line("(train+probe)/train", cost.ratio, DIAGNOSTICS_MAX))
    verdict = "identical" if cost.same_weights else "DIFFERENT (the probe must not change training)"
    print(f"  weights after {epochs} epochs, on vs off: {verdict}")
    label = f"{arch.name}: diagnostics (train+probe)/train"
    return [target_line(label, cost.ratio, DIAGNOSTICS_MAX, "" if cost.same_weights else verdict)]


def _placement(workdir: Path, source: Path, data_dir: Path, tracking: str | None = None):
    """Where a benchmarked run reads and writes: the data folder, its data/ (shared or fresh),
    an MLflow store and a reports/ of its own (in the temporary folder)."""
    store = workdir / "mlflow.db"
    return (
        f"data.source={source}",
        f"data.dir={data_dir}",
        f"tracking.uri={tracking or f'sqlite:///{store}'}",
        f"report.dir={workdir / 'reports'}",
    )


def _actlab(
    workdir: Path,
    overrides: tuple[str, ...],
    source: Path,
    data_dir: Path,
    tracking: str | None = None,
    store: Path | None = None,
) -> Finished:
    """`actlab run` as a user types it (start-up included), with the project's params.yaml (the
    working folder has none of its own) and this checkout's code."""
    return run_actlab(
        workdir,
        _placement(workdir, source, data_dir, tracking) + overrides,
        store=store or workdir / "mlflow.db",
        params=PARAMS,
        actlab=ACTLAB,
        env=project_env(),
    )


def time_flow(data_folder: Path, workdir: Path, scale: Scale) -> Finished:
    """The tutorial networks' whole flow in a fresh folder: its own data/ (preprocessing
    included), MLflow store and reports."""
    overrides = (
        "sweep.models=[tutorial]",
        f"sweep.activations=[{','.join(scale.flow_activations)}]",
        f"train.epochs={scale.flow_epochs}",
    )
    return _actlab(workdir, overrides, data_folder, workdir / "data")


def bench_flow(data: Data, data_folder: Path, workdir: Path, scale: Scale) -> list[str]:
    acts = ", ".join(scale.flow_activations)
    print(f"\n== flow vs bare loop: tutorial network, {acts}; {scale.flow_epochs} epochs each ==")
    flow = time_flow(data_folder, workdir / "first", scale)
    init = initial_weights(TUTORIAL)
    start = time.perf_counter()
    for name in scale.flow_activations:  # relu and tanh give NaN at once; it carries on
        loop = TF1Loop(data, TUTORIAL, init, output=FLOW_ACTIVATIONS[name])
        for e in range(scale.flow_epochs):
            loop.epoch(e)
        loop.close()
    bare_s = time.perf_counter() - start
    flow_s = flow.wall_seconds
    print(f"  actlab run (whole flow, start-up included)  {flow_s:8.1f} s")
    print(f"  bare TF1 loop (training only)               {bare_s:8.1f} s")
    print(f"  flow/bare                                   {flow_s / bare_s:8.2f}")
    # The same command again, in another fresh folder: the same networks must come out.
    again = time_flow(data_folder, workdir / "second", scale)
    same = describe_comparison(compare_results(flow.children, again.children), len(flow.children))
    print(f"  the same command again ({again.wall_seconds:.1f} s): {same}")
    return [target_line("tutorial flow / bare TF1 loop", flow_s / bare_s, FLOW_PER_BARE)]


# ------------------------------------------------------------------------------ whole runs


def _gib(n_bytes: int) -> float:
    return n_bytes / GIB


def _report_run(title: str, run: Finished) -> dict[str, float]:
    """Print what one whole run cost, from outside and from its store; return its figures."""
    children = run.children
    epochs = epoch_total(children)
    first = seconds_to_first_epoch(children, run.started_ms)
    created = (min(c.start_ms for c in children) - run.started_ms) / 1000
    ended = (max(c.end_ms for c in children) - run.started_ms) / 1000
    overheads = Overheads.of(children)
    rate = networks_per_minute(len(children), run.wall_seconds)
    per_epochs = run.wall_seconds / epochs if epochs > 0 else float("nan")
    print(f"  -- {title}: {len(children)} networks --")
    print(
        f"  actlab run                     {run.wall_seconds:7.1f} s wall; Σ epoch_seconds "
        f"{epochs:.1f} s; wall / Σ {per_epochs:.2f}"
    )
    print(
        f"  command start -> first epoch   {first:7.1f} s (as its epoch_seconds was logged, at "
        "the epoch's end)"
    )
    print(
        f"  timeline                       start-up {created:.1f} s (to the first network's "
        f"run), networks {ended - created:.1f} s, then {run.wall_seconds - ended:.1f} s to the "
        "exit (report)"
    )
    print(f"  per-network overhead           {overheads.describe()}")
    print(f"  networks per minute            {rate:7.1f} (the whole command)")
    print(
        f"  peak memory                    {_gib(run.peak_tree_bytes):7.2f} GiB, the command and "
        f"every process under it (Prefect's server included), sampled every 0.25 s; the largest "
        f"single process {_gib(run.peak_process_bytes):.2f} GiB"
    )
    return {
        "wall_per_epochs": per_epochs,
        "first_epoch": first,
        "overhead": overheads.median,
        "per_minute": rate,
        "peak_gib": _gib(run.peak_tree_bytes),
    }


def bench_whole(source: Path, workdir: Path, scale: Scale) -> tuple[list[str], list[Child]]:
    """The default grid and the 100-network grid, each `actlab run` as a user runs it, after a
    warm-up run; the ratios against their targets, and the 100-network grid's networks."""
    print(
        "\n== whole run: `actlab run` in a subprocess, read back from the MLflow store it wrote =="
    )
    data_dir = workdir / "data"  # shared: the warm-up prepares the data, the others find it
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    was_warm = (home / "prefect.db").is_file()
    warm = _actlab(workdir / "warm-up", WARM_UP, source, data_dir)
    print(
        f"  warm-up: tutorial/softmax, 1 epoch, {warm.wall_seconds:.1f} s; Prefect's database "
        f"{home / 'prefect.db'} {'existed before' if was_warm else 'created by it'}: warm for "
        "the runs below, which find the data prepared"
    )
    default = _report_run(
        "the default grid (params.yaml)",
        _actlab(workdir / "default", scale.default, source, data_dir),
    )
    hundred_run = _actlab(workdir / "hundred", scale.hundred, source, data_dir)
    hundred = _report_run(f"the 100-network grid ({scale.hundred_label})", hundred_run)
    lines = [
        target_line("default grid: wall / Σ epoch_seconds", default["wall_per_epochs"],
                    WALL_PER_EPOCH_TIME),
        target_line("default grid: command start -> first epoch (s)", default["first_epoch"],
                    FIRST_EPOCH_SECONDS, "~/.prefect warm"),
        target_line("default grid: median overhead per network (s)", default["overhead"],
                    OVERHEAD_SECONDS),
        target_line("default grid: peak memory (GiB)", default["peak_gib"], PEAK_GIB),
        target_line("100 networks: networks per minute", hundred["per_minute"], None,
                    "the whole command"),
        target_line("100 networks: median overhead per network (s)", hundred["overhead"],
                    OVERHEAD_SECONDS),
        target_line("100 networks: peak memory (GiB)", hundred["peak_gib"], PEAK_GIB),
    ]  # fmt: skip
    return lines, hundred_run.children


def bench_dask(source: Path, workdir: Path, scale: Scale, threads: list[Child] | None) -> list[str]:
    """The 100-network grid on one, then two, single-threaded Dask workers (separate processes,
    with an MLflow tracking server); networks per minute over the networks' span."""
    print(f"\n== Dask: the 100-network grid ({scale.hundred_label}) on 1 and on 2 workers ==")
    threads_env = " ".join(f"{k}={v}" for k, v in ONE_THREAD.items())
    print(
        "  separate processes bound to 127.0.0.1: a Dask scheduler; Dask workers, `--nthreads 1`"
        f" with {threads_env}; an MLflow tracking server over SQLite; the flow with "
        "runner.kind=dask, runner.address and tracking.uri pointing at them"
    )
    data_dir = workdir / "data"  # shared with the whole-run part, prepared once
    rates: dict[int, float] = {}
    runs: dict[int, list[Child]] = {}
    for workers in (1, 2):
        folder = workdir / f"dask-{workers}"
        folder.mkdir(parents=True)
        with Cluster(folder, workers) as cluster:
            imported = cluster.import_on_workers(WORKER_IMPORT)
            overrides = scale.hundred + (
                "runner.kind=dask", f"runner.address={cluster.scheduler}",
            )  # fmt: skip
            with CpuSampler(cluster.worker_pids) as cpu:
                run = _actlab(
                    folder / "flow", overrides, source, data_dir, cluster.tracking_uri,
                    cluster.store,
                )  # fmt: skip
            servers = cluster.prefect_servers()
        children = runs[workers] = run.children
        first, last = min(c.start_ms for c in children), max(c.end_ms for c in children)
        span = training_span(children)
        rates[workers] = networks_per_minute(len(children), span)
        print(
            f"  {workers} worker{'s' if workers > 1 else ' '}: {rates[workers]:6.1f} networks/min:"
            f" {len(children)} networks in {span:.1f} s, from the first one's start "
            f"(+{(first - run.started_ms) / 1000:.1f} s) to the last one's end "
            f"(+{(last - run.started_ms) / 1000:.1f} s) of the {run.wall_seconds:.1f} s command; "
            f"trained by {len({c.worker for c in children})} worker process(es), which used "
            f"{cpu.cores(first, last):.2f} CPU cores meanwhile; they had imported the project "
            f"before the command ({imported:.1f} s)"
        )
        if servers:
            print(
                f"    the workers started {servers} Prefect server(s) of their own (Prefect's "
                "temporary server: no PREFECT_API_URL reaches them); their CPU is in the above"
            )
    same = describe_comparison(compare_results(runs[1], runs[2]), len(runs[1]))
    print(f"  1 worker vs 2: {same}")
    if threads is not None:
        same = describe_comparison(compare_results(threads, runs[1]), len(threads))
        print(f"  threads runner (TensorFlow on every core) vs 1 Dask worker (one thread): {same}")
    return [
        target_line("Dask: networks/min, 2 workers / 1 worker", rates[2] / rates[1], DASK_SCALING),
    ]


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have used since boot (and stolen by the hypervisor)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()  # this process and its finished children (the flow subprocess)
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def reporting_interference():
    """Print the share of the machine other processes used meanwhile: timings taken while
    something else runs (tests, another benchmark) are not worth reading."""
    busy, own, start = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    yield
    others = (_busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own)
    share = max(others, 0.0) / ((time.perf_counter() - start) * os.cpu_count())
    verdict = "ok" if share < 0.05 else "TIMINGS UNRELIABLE, rerun on an idle machine"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"  other processes used {share:.0%} of the CPU meanwhile: {verdict} (load now {load})")


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} (numpy build config)"
    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(
        f"{i['internal_api']} {i.get('version')} ({i.get('threading_layer')}, "
        f"{i.get('architecture')}, {i['num_threads']} threads)"
        for i in libs
    )


def print_header(description: str, data: Data | None, parts: list[str], scale: Scale) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    print("activation-lab training benchmark")
    print(f"  cpu:     {cpu}; {os.cpu_count()} cores, {len(os.sched_getaffinity(0))} usable")
    print(
        f"  python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, NumPy {np.__version__}"
    )
    print(f"  blas:    {_blas()}")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"  load:    {load} (1/5/15 min averages; timings need an otherwise idle machine)")
    for var in BLAS_ENV:
        if var in os.environ:
            print(
                f"  warning: {var}={os.environ[var]} is set (slows NumPy; `make bench` unsets it)"
            )
    if data is None:
        print(f"  data:    {description}")
    else:
        print(
            f"  data:    {description}: {len(data.x_train):,} train, {len(data.x_val):,} "
            f"validation, {len(data.x_test):,} test images"
        )
    if {"speed", "diagnostics"} & set(parts):
        print(
            f"  SGD:     batch {BATCH}, learning rate {LR}, no decay; round-robin, one epoch per "
            "method per round; s/epoch = median of epochs 2..E"
        )
    print(f"  parts:   {', '.join(parts)}")
    if scale is TINY and FLOW_PARTS & set(parts):
        print("  TINY grids (--tiny): the actlab runs are shrunk to seconds; figures meaningless")


def parse_parts(text: str) -> list[str]:
    """`speed,whole` -> ['speed', 'whole'] in the order they run; an unknown name is an error."""
    asked = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in asked if p not in PARTS]
    if unknown or not asked:
        raise argparse.ArgumentTypeError(
            f"--parts {text!r}: unknown part(s) {', '.join(unknown) or '(none given)'}; "
            f"accepted: a comma-separated list of {', '.join(PARTS)}"
        )
    return [p for p in PARTS if p in asked]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with the four MNIST-format IDX .gz files "
        "(synthetic data of the same shapes if it does not exist)",
    )
    parser.add_argument("--epochs", type=int, default=7, help="epochs per method (at least 2)")
    parser.add_argument(
        "--parts",
        type=parse_parts,
        default=list(PARTS),
        help=f"which parts to run, comma-separated (default: all): {', '.join(PARTS)}",
    )
    parser.add_argument(
        "--skip-flow",
        action="store_true",
        help="skip every part that runs `actlab run` (flow, whole, dask)",
    )
    # Every actlab run shrunk to seconds: for checking that the parts work, not for figures.
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is left out of the median)")
    if args.skip_flow:
        args.parts = [p for p in args.parts if p not in FLOW_PARTS]
    return args


class _Summary(list):
    """The lines printed at the end, each measure that has a target against it; a part that could
    not run says so there."""

    failed = False

    @contextlib.contextmanager
    def part(self, name: str):
        """Run a part that starts processes; if it fails, print why and go on with the next."""
        try:
            yield
        except (RuntimeError, OSError, ValueError) as exc:
            print(f"  {name} FAILED: {exc}")
            self.append(f"  {name}: FAILED ({str(exc).splitlines()[0]})")
            self.failed = True


def main() -> None:
    args = parse_args()
    parts, scale = args.parts, (TINY if args.tiny else FULL)
    summary = _Summary()
    with tempfile.TemporaryDirectory(prefix="actlab-bench-") as tmp:
        folder = args.data
        if folder.is_dir():
            description = str(folder)
        else:
            folder = write_synthetic_idx(Path(tmp) / "synthetic")
            description = f"SYNTHETIC noisy class prototypes (no folder {args.data})"
        needs_data = {"speed", "diagnostics", "flow"} & set(parts)
        data = load_data(folder, Path(tmp) / "data", description) if needs_data else None
        print_header(description, data, parts, scale)
        if "speed" in parts:
            for arch in ARCHS:
                with reporting_interference():
                    summary += bench_arch(data, arch, args.epochs)
        if "diagnostics" in parts:
            with reporting_interference():
                summary += bench_diagnostics(data, DIAGNOSTICS_ARCH, args.epochs)
        if "flow" in parts:
            with reporting_interference(), summary.part("flow"):
                summary += bench_flow(data, folder, Path(tmp) / "flow", scale)
        data = None  # the whole runs are subprocesses: free this process's copy of the images
        gc.collect()
        threads = None  # the 100-network grid's networks on the threads runner
        if "whole" in parts:
            with reporting_interference(), summary.part("whole run"):
                lines, threads = bench_whole(folder, Path(tmp) / "whole", scale)
                summary += lines
        if "dask" in parts:
            with reporting_interference(), summary.part("dask"):
                summary += bench_dask(folder, Path(tmp) / "whole", scale, threads)
        if summary:
            load = " ".join(f"{v:.2f}" for v in os.getloadavg())
            print(f"\n== against the targets (load now {load}) ==")
            print("\n".join(summary))
    if summary.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
