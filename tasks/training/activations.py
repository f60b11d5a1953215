"""The activation functions of the catalogue (`tasks.core.names.ACTIVATIONS`), in TensorFlow.

The catalogue there says what each activation is (its matched initialiser, whether it may stand
in a hidden layer, its parameters); this module says how it computes. One place to add an
activation: an entry in both.
"""

from collections.abc import Callable
from functools import partial

import tensorflow as tf

from tasks.core.names import ACTIVATIONS


def _leaky_relu(x: tf.Tensor, slope: float) -> tf.Tensor:
    return tf.nn.leaky_relu(x, alpha=slope)


def _mish(x: tf.Tensor) -> tf.Tensor:
    return x * tf.tanh(tf.nn.softplus(x))


def _hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
    # Keras 3's definition: relu6(x + 3) / 6
    return tf.nn.relu6(x + 3.0) / 6.0


FUNCTIONS: dict[str, Callable[..., tf.Tensor]] = {
    "softmax": tf.nn.softmax,
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "softsign": tf.nn.softsign,
    "hard_sigmoid": _hard_sigmoid,
    "linear": tf.identity,
    "relu": tf.nn.relu,
    "leaky_relu": _leaky_relu,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "softplus": tf.nn.softplus,
    "swish": tf.nn.silu,
    "gelu": tf.nn.gelu,
    "mish": _mish,
}
if FUNCTIONS.keys() != ACTIVATIONS.keys():  # one catalogue: the names and the functions agree
    raise ImportError(f"tasks.core.names and {__name__} list different activations")


def activation_fn(name: str, **values: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """The function of activation `name`, its parameters (e.g. slope=0.01) filled in from
    `values`; values it does not take are ignored."""
    spec = ACTIVATIONS[name]
    return partial(FUNCTIONS[name], **{k: values[k] for k in spec.params})
