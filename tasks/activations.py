"""The activation catalogue: one registry, one place to add an activation.

Each entry knows its function and its matched initialiser (the one that keeps the variance of the
activations steady through a layer: Glorot for the saturating ones, He for the ReLU family,
LeCun for SELU), and whether it can stand in a hidden layer (softmax cannot: it only makes sense
as the tutorial's output, where it turns scores into a probability vector).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import tensorflow as tf

# Default slope of leaky_relu for negative inputs (Maas et al. 2013 use 0.01);
# models.leaky_relu_slope in params sets it.
LEAKY_SLOPE = 0.01


def _leaky_relu(x: tf.Tensor, slope: float) -> tf.Tensor:
    return tf.nn.leaky_relu(x, alpha=slope)


def _mish(x: tf.Tensor) -> tf.Tensor:
    return x * tf.tanh(tf.nn.softplus(x))


def _hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
    # Keras 3's definition: relu6(x + 3) / 6
    return tf.nn.relu6(x + 3.0) / 6.0


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[..., tf.Tensor]  # fn(x, **params)
    init: str  # matched initialiser, a key of tasks.models.INITIALISERS
    hidden_ok: bool = True  # may stand in a hidden layer
    params: tuple[str, ...] = ()  # keyword parameters of fn, e.g. leaky_relu's slope

    def bind(self, **values: float) -> Callable[[tf.Tensor], tf.Tensor]:
        """fn with its parameters filled in from `values` (others are ignored)."""
        return partial(self.fn, **{k: values[k] for k in self.params})


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("softmax", tf.nn.softmax, "glorot_uniform", hidden_ok=False),
        Activation("sigmoid", tf.sigmoid, "glorot_uniform"),
        Activation("tanh", tf.tanh, "glorot_uniform"),
        Activation("softsign", tf.nn.softsign, "glorot_uniform"),
        Activation("hard_sigmoid", _hard_sigmoid, "glorot_uniform"),
        Activation("linear", tf.identity, "glorot_uniform"),
        Activation("relu", tf.nn.relu, "he_normal"),
        Activation("leaky_relu", _leaky_relu, "he_normal_leaky", params=("slope",)),
        Activation("elu", tf.nn.elu, "he_normal"),
        Activation("selu", tf.nn.selu, "lecun_normal"),
        Activation("softplus", tf.nn.softplus, "he_normal"),
        Activation("swish", tf.nn.silu, "he_normal"),
        Activation("gelu", tf.nn.gelu, "he_normal"),
        Activation("mish", _mish, "he_normal"),
    ]
}
