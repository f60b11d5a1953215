"""Tiny MNIST-format datasets for tests: real gzip'd IDX files with learnable synthetic images."""

import gzip
import struct
from pathlib import Path

import numpy as np

from tasks.core.paths import IDX_FILES

_MAGIC = {3: 2051, 1: 2049}  # IDX ubyte images (n, rows, cols) and labels (n,)


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of a uint8 array of 3 (images) or 1 (labels) dimensions."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in _MAGIC:
        raise ValueError(f"expected a 1-D or 3-D uint8 array, got {array.dtype} {array.shape}")
    header = struct.pack(f">I{array.ndim}I", _MAGIC[array.ndim], *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, *, mtime: int = 0) -> Path:
    """Write `array` as a gzip'd IDX file (magic 2051 for 3-D images, 2049 for 1-D labels)."""
    path = Path(path)
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=mtime) as f:
        f.write(idx_bytes(array))
    return path


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n,) labels -> (n, 28, 28) uint8 images: class k lights its own 14×5 block, plus noise."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        row, col = divmod(int(k), 5)  # 2 rows × 5 columns of blocks
        r, c = row * 14, col * 5 + 1
        images[i, r : r + 14, c : c + 5] = rng.integers(180, 256, size=(14, 5), dtype=np.uint8)
    return images


def make_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Write the four IDX files (names from IDX_FILES) of a learnable dataset into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / IDX_FILES[f"{split}_images"], make_images(labels, rng))
        write_idx(folder / IDX_FILES[f"{split}_labels"], labels)
    return folder
