"""The catalogues by name: what params may say, without the code that implements it.

The TensorFlow side (`tasks.training`) looks each name up here; the config validates against the
same names, so a typo is rejected without importing TensorFlow.
"""

from dataclasses import dataclass

MODELS = ("tutorial", "mlp")  # the tutorial's single layer, and the sound comparison
OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("epoch_decay", "exponential", "inverse_time", "constant")
# Initialisers params may name; `auto` is the activation's matched one (ActivationSpec.init).
INITS = (
    "auto",
    "zeros",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
)
# Default slope of leaky_relu for negative inputs (Maas et al. 2013 use 0.01);
# models.leaky_relu_slope in params sets it.
LEAKY_SLOPE = 0.01
DEFAULT_BASELINE = "relu"  # what every other activation is compared with, unless params say other

# A network's training outcome, from best to worst: only `ok` can be ranked best. `failed`,
# `killed` and `unfinished` are read back from MLflow for runs an error or an interrupt ended.
STATUSES = ("ok", "degenerate", "diverged", "failed", "killed", "unfinished")


@dataclass(frozen=True)
class ActivationSpec:
    """What the rest of the project needs to know of an activation, bar its function."""

    name: str
    init: str  # matched initialiser, a key of tasks.training.models.INITIALISERS
    hidden_ok: bool = True  # may stand in a hidden layer (softmax: only as the tutorial's output)
    params: tuple[str, ...] = ()  # keyword parameters of its function, e.g. leaky_relu's slope


# Matched initialisers keep the variance of the activations steady through a layer: Glorot for
# the saturating ones, He for the ReLU family, LeCun for SELU.
ACTIVATIONS: dict[str, ActivationSpec] = {
    a.name: a
    for a in [
        ActivationSpec("softmax", "glorot_uniform", hidden_ok=False),
        ActivationSpec("sigmoid", "glorot_uniform"),
        ActivationSpec("tanh", "glorot_uniform"),
        ActivationSpec("softsign", "glorot_uniform"),
        ActivationSpec("hard_sigmoid", "glorot_uniform"),
        ActivationSpec("linear", "glorot_uniform"),
        ActivationSpec("relu", "he_normal"),
        ActivationSpec("leaky_relu", "he_normal_leaky", params=("slope",)),
        ActivationSpec("elu", "he_normal"),
        ActivationSpec("selu", "lecun_normal"),
        ActivationSpec("softplus", "he_normal"),
        ActivationSpec("swish", "he_normal"),
        ActivationSpec("gelu", "he_normal"),
        ActivationSpec("mish", "he_normal"),
    ]
}


# Class names per dataset, by label: what a confusion matrix's rows and columns are called. A folder
# source is known by its folder name (Debian's /usr/share/datasets/fashion-mnist is
# "fashion-mnist"); any other dataset's classes are called by their label, 0, 1, 2, ...
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": FASHION_MNIST_CLASSES,
    "xor": ("0", "1"),
}


def class_names(dataset: str | None, n_classes: int) -> list[str]:
    """The names of `dataset`'s `n_classes` classes, by label (`fashion-mnist` and
    `fashion_mnist` alike); the labels themselves for a dataset not catalogued here."""
    key = (dataset or "").strip().lower().replace("-", "_")
    names = CLASS_NAMES.get(key, ())
    if len(names) != n_classes:
        return [str(label) for label in range(n_classes)]
    return list(names)


def status_rank(status: str) -> int:
    """Position of a status in STATUSES (unknown ones last): sorts runs best outcome first."""
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)
