"""What the networks are fed: the preprocessed splits as tensors, held once per process.

Images are kept as uint8 bytes where they are 8-bit pixels scaled to [0, 1] (a quarter of the
memory) and turned back into exactly the float32 values preprocessing wrote, batch by batch, inside
the compiled graphs (`features`). Labels become one-hot rows.
"""

import functools

import numpy as np
import tensorflow as tf

from tasks.training.models import N_CLASSES


def one_hot(labels, n_classes: int = N_CLASSES) -> tf.Tensor:
    """(n,) integer labels -> (n, n_classes) float32."""
    return tf.one_hot(tf.cast(labels, tf.int32), n_classes, dtype=tf.float32)


def as_tensor(x) -> tf.Tensor:
    """An array as a float32 tensor; a tensor as it is (no copy)."""
    return x if isinstance(x, tf.Tensor) else tf.convert_to_tensor(x, tf.float32)


def as_pixels(x: np.ndarray, rows: int = 5_000) -> tf.Tensor:
    """Images as a tensor: uint8 when every value is k/255 (8-bit pixels scaled to [0, 1]).

    TensorFlow keeps about twice a constant's size (55,000 float32 images: 341 MB resident; as
    uint8: 86 MB). `features` turns the bytes back into exactly the same float32 values per
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


def features(x: tf.Tensor) -> tf.Tensor:
    """float32 inputs from what as_pixels kept: exactly the values preprocessing wrote."""
    return tf.cast(x, tf.float32) / _PIXEL_MAX if x.dtype == tf.uint8 else x


@functools.lru_cache(maxsize=1)
def training_data(data_path: str) -> tuple:
    """((x_train, y_train, x_val, y_val), n_classes) of one .npz, images as tensors, kept for the
    next network.

    One copy per process instead of one per network: loading the 55,000 images anew for each of
    the grid's networks left the allocator holding several copies (peak RSS 1.9 GB, default grid).
    """
    with np.load(data_path, allow_pickle=False) as npz:
        x_train, y_train = as_pixels(npz["x_train"]), npz["y_train"]
        x_val, y_val = as_pixels(npz["x_val"]), npz["y_val"]
        n_classes = int(npz["n_classes"])
    return (x_train, y_train, x_val, y_val), n_classes


@functools.lru_cache(maxsize=1)
def test_data(data_path: str) -> tuple[tf.Tensor, np.ndarray]:
    """x_test (as training holds images: see as_pixels) and y_test, read once per process."""
    with np.load(data_path, allow_pickle=False) as npz:
        return as_pixels(npz["x_test"]), npz["y_test"]
