"""Data the training tests share."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def blobs():
    """600 train / 200 val images: class k brightens rows 2k..2k+2, plus noise."""
    rng = np.random.default_rng(0)

    def make(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.uniform(0, 0.3, (n, 28, 28)).astype(np.float32)
        for i, k in enumerate(labels):
            x[i, 2 * k + 3 : 2 * k + 5, :] = 1.0
        return x.reshape(n, 784), labels

    return (*make(600), *make(200))
