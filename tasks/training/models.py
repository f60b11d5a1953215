"""The networks under comparison, as plain TensorFlow variables and functions.

`tutorial`: the tutorial's network exactly: pred = activation(x·W + b) with W and b zero and the
cost mean(-sum(y * log(pred))). That cost assumes pred is a probability vector, so only softmax
makes sense; the others are kept because the tutorial runs them (and shows how they fail).

`mlp`: the sound comparison: the activation in the hidden layer(s), linear logits, softmax
cross-entropy on the logits, and the activation's matched initialiser.
"""

import random
import threading
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tasks.core.config import ModelsConfig
from tasks.core.files import atomic_path, explaining_full_disk, file_identity
from tasks.core.names import ACTIVATIONS, LEAKY_SLOPE, MODELS
from tasks.core.paths import WEIGHTS_SPACE_HINT
from tasks.training.activations import activation_fn

N_INPUTS = 784  # MNIST-format: 28 * 28 pixels, flattened (XOR: 2)
N_CLASSES = 10  # MNIST-format: the digits (XOR: 2)

INITIALISERS = {
    "zeros": lambda seed, slope: keras.initializers.Zeros(),
    "glorot_uniform": lambda seed, slope: keras.initializers.GlorotUniform(seed=seed),
    "glorot_normal": lambda seed, slope: keras.initializers.GlorotNormal(seed=seed),
    "he_normal": lambda seed, slope: keras.initializers.HeNormal(seed=seed),
    "he_uniform": lambda seed, slope: keras.initializers.HeUniform(seed=seed),
    "lecun_normal": lambda seed, slope: keras.initializers.LecunNormal(seed=seed),
    # He with the leaky-ReLU gain: variance 2 / ((1 + a^2) fan_in), a = the negative slope
    "he_normal_leaky": lambda seed, slope: keras.initializers.VarianceScaling(
        scale=2.0 / (1.0 + slope**2), mode="fan_in", distribution="truncated_normal", seed=seed
    ),
}


@dataclass
class Network:
    """Weights plus the two functions training needs: the output and the cost."""

    model: str
    activation: str
    init: str  # the initialiser actually used for the hidden layers (after resolving `auto`)
    weights: list[tf.Variable]  # [W0, b0, W1, b1, ...]; W: (fan_in, fan_out), b: (fan_out,)
    leaky_slope: float = LEAKY_SLOPE  # leaky_relu's negative slope

    @property
    def loss_name(self) -> str:
        return "tutorial_log_loss" if self.model == "tutorial" else "softmax_cross_entropy"

    def output(self, x: tf.Tensor) -> tf.Tensor:
        """(batch, 784) -> (batch, 10): pred for the tutorial, logits for the mlp."""
        return self.forward(x)[-1][1]

    def forward(
        self, x: tf.Tensor, first: tf.Tensor | None = None
    ) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """(pre-activation x·W + b, output) of every layer, input to output; the last layer's
        output is the network's. Training and the diagnostics run these same ops. `first`: the
        first layer's pre-activation of these images, already computed (the layers go on from
        it)."""
        act = self.activation_fn
        h = x
        layers = []
        for i in range(self.n_layers):
            w, b = self.weights[2 * i], self.weights[2 * i + 1]
            z = first if i == 0 and first is not None else tf.matmul(h, w) + b
            h = act(z) if self.activated(i) else z
            layers.append((z, h))
        return layers

    @property
    def activation_fn(self):
        return activation_fn(self.activation, slope=self.leaky_slope)

    @property
    def n_layers(self) -> int:
        return len(self.weights) // 2

    def activated(self, i: int) -> bool:
        """Whether layer i (0-based) applies the activation: every layer of the tutorial, every
        hidden layer of the mlp (its output layer is linear logits)."""
        return self.model == "tutorial" or i < self.n_layers - 1

    @property
    def n_hidden(self) -> int:
        """Hidden layers: the ones the per-layer diagnostics look inside (0 for the tutorial)."""
        return self.n_layers - 1

    def cost(self, out: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Mean cost over the batch; y is one-hot (batch, 10)."""
        if self.model == "tutorial":
            # The tutorial's cost as written: no clipping, so log(0) and log(<0) give inf/NaN.
            return tf.reduce_mean(-tf.reduce_sum(y * tf.math.log(out), axis=1))
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=out))

    @property
    def layer_sizes(self) -> list[int]:
        """[inputs, hidden..., classes]"""
        return [int(self.weights[0].shape[0])] + [int(w.shape[1]) for w in self.weights[::2]]

    @property
    def n_classes(self) -> int:
        return int(self.weights[-1].shape[0])

    def numpy_weights(self) -> list[np.ndarray]:
        return [w.numpy() for w in self.weights]


def seed_everything(seed: int) -> None:
    """Python's and NumPy's global generators seeded, for any library code that draws from them.

    A network does not depend on them, nor on TensorFlow's global seed: its initialisers take
    explicit seeds (build_network) and each epoch's shuffle comes from a generator of its own
    (fit_network, fit_stacked); a test builds the same weights under two global seeds. The global
    seed is left alone because `tf.random.set_seed` (which `keras.utils.set_random_seed` calls)
    clears TensorFlow's kernel caches: every compiled graph's next call then instantiates its
    kernels anew, ~30 ms per graph, some 0.3 s per stacked group of nine."""
    random.seed(seed)
    np.random.seed(seed)


def resolve_init(model: str, activation: str, cfg: ModelsConfig) -> str:
    """The initialiser of the model's activation layers: its `init`, `auto` = the matched one."""
    init = cfg.tutorial.init if model == "tutorial" else cfg.mlp.init  # tutorial: zeros
    return ACTIVATIONS[activation].init if init == "auto" else init


def layer_sizes(
    model: str, cfg: ModelsConfig, n_inputs: int = N_INPUTS, n_classes: int = N_CLASSES
) -> list[int]:
    hidden = list(cfg.mlp.hidden_units) if model == "mlp" else []
    return [n_inputs, *hidden, n_classes]


def build_network(
    model: str,
    activation: str,
    cfg: ModelsConfig,
    seed: int,
    n_inputs: int = N_INPUTS,
    n_classes: int = N_CLASSES,
) -> Network:
    """A freshly initialised network; the same seed gives the same weights."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; accepted: {', '.join(MODELS)}")
    if model == "mlp" and not ACTIVATIONS[activation].hidden_ok:
        raise ValueError(f"{activation!r} cannot stand in a hidden layer")
    init = resolve_init(model, activation, cfg)
    sizes = layer_sizes(model, cfg, n_inputs, n_classes)
    weights = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        hidden = i < len(sizes) - 2
        # The output layer of the mlp is linear: Glorot suits it whatever the hidden activation.
        name = init if (hidden or model == "tutorial") else "glorot_uniform"
        if model == "mlp" and init == "zeros":
            name = "zeros"
        w0 = INITIALISERS[name](seed * 1000 + i, cfg.leaky_relu_slope)((fan_in, fan_out), "float32")
        weights.append(tf.Variable(w0, name=f"W{i}"))
        weights.append(tf.Variable(tf.zeros([fan_out]), name=f"b{i}"))
    return Network(model, activation, init, weights, cfg.leaky_relu_slope)


def network_from_weights(
    model: str, activation: str, cfg: ModelsConfig, arrays: list[np.ndarray]
) -> Network:
    """A network holding saved weights (checked against the configured layer sizes)."""
    sizes = layer_sizes(model, cfg, int(arrays[0].shape[0]), int(arrays[-1].shape[0]))
    expected = [s for a, b in zip(sizes[:-1], sizes[1:], strict=True) for s in ((a, b), (b,))]
    found = [tuple(a.shape) for a in arrays]
    if found != expected:
        raise ValueError(f"saved weights have shapes {found}, the {model} model needs {expected}")
    weights = [tf.Variable(a, name=f"w{i}") for i, a in enumerate(arrays)]
    return Network(
        model, activation, resolve_init(model, activation, cfg), weights, cfg.leaky_relu_slope
    )


def save_weights(arrays: list[np.ndarray], path: Path) -> None:
    """[W0, b0, W1, b1, ...] to an .npz at `path`, written whole (temp file + rename); on a full
    disk, nothing is left and the NoSpaceError says what to free. The arrays are kept for this
    process's next `load_weights` of the file (`_Saved`): hand over arrays no one changes.

    `path`'s folder must exist: a flow run makes its weights folder when it starts and removes it
    when it ends, so a network still training after its flow run failed writes nothing."""
    with explaining_full_disk(path, "a network's weights", WEIGHTS_SPACE_HINT):
        with atomic_path(Path(path), make_parent=False) as tmp, open(tmp, "xb") as f:
            np.savez(f, *arrays)
    _SAVED.keep(Path(path), arrays)


def load_weights(path: str | Path) -> list[np.ndarray]:
    """The arrays `save_weights` wrote, in order (no pickles): those this process saved there,
    if the file is still the one it wrote, else read from the file."""
    kept = _SAVED.take(Path(path))
    if kept is not None:
        return kept
    with np.load(path, allow_pickle=False) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]  # savez order: arr_0, arr_1, ...


class _Saved:
    """The weights this process saved and has not read back yet, by path, with the file's
    identity once written: the evaluation reads a network's weights right after its training
    saved them (in the same process, unless its tasks run elsewhere), and gets these instead of
    reading the .npz again (~1-5 ms a network). Each is handed over once (a second reading reads
    the file), and at most MAX_BYTES are kept, the oldest dropped first."""

    MAX_BYTES = 64 * 2**20

    def __init__(self) -> None:
        self._kept: dict[Path, tuple[tuple[int, ...], list[np.ndarray]]] = {}
        self._lock = threading.Lock()

    def keep(self, path: Path, arrays: list[np.ndarray]) -> None:
        entry = (file_identity(path), list(arrays))
        with self._lock:
            self._kept.pop(path, None)
            self._kept[path] = entry  # the newest last
            total = sum(a.nbytes for _, kept in self._kept.values() for a in kept)
            while total > self.MAX_BYTES and self._kept:
                _, dropped = self._kept.pop(next(iter(self._kept)))
                total -= sum(a.nbytes for a in dropped)

    def take(self, path: Path) -> list[np.ndarray] | None:
        with self._lock:
            entry = self._kept.pop(path, None)
        if entry is None:
            return None
        try:
            same = entry[0] == file_identity(path)
        except OSError:
            same = False  # gone: reading it says so
        return entry[1] if same else None


_SAVED = _Saved()
