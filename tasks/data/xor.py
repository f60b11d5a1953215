"""data.source: xor, the textbook case behind the tutorial's claim that a network without a
nonlinearity cannot learn XOR: points around the corners of the unit square, labelled by XOR."""

import hashlib
import json

import numpy as np

# As many points as MNIST has images (training file, test file), so the same val_size and batch
# size work; the noise is the std of each coordinate around its corner.
XOR_SIZES = (60_000, 10_000)
XOR_NOISE = 0.1
XOR_VERSION = 1  # part of the digest: bump when xor_cloud changes


def xor_cloud(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points around the corners of the unit square, labelled by XOR of the corner's bits.

    (n, 2) float32, (n,) uint8. The noise (XOR_NOISE) keeps the four clusters apart, so one hidden
    layer can classify all of them, while any linear model gets at most three corners right: 75 %.
    """
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n, 2))
    labels = (corners[:, 0] ^ corners[:, 1]).astype(np.uint8)
    points = corners + rng.normal(0.0, XOR_NOISE, size=(n, 2))
    return points.astype(np.float32), labels


def xor_recipe() -> tuple[str, str]:
    """(how the cloud is made, as JSON; its sha256): the generated dataset's identity."""
    recipe = json.dumps({"sizes": XOR_SIZES, "noise": XOR_NOISE, "version": XOR_VERSION})
    return recipe, hashlib.sha256(recipe.encode()).hexdigest()


def xor_splits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_test, y_test of the cloud (training and test drawn with other seeds)."""
    x, y = xor_cloud(XOR_SIZES[0], seed=0)
    x_test, y_test = xor_cloud(XOR_SIZES[1], seed=1)
    return x, y, x_test, y_test
