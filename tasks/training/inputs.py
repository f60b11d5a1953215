"""What the networks are fed: the preprocessed splits as tensors, held once per process.

Images are kept as uint8 bytes where they are 8-bit pixels scaled to [0, 1] (a quarter of the
memory) and turned back into exactly the float32 values preprocessing wrote, batch by batch, inside
the compiled graphs (`features`). Labels become one-hot rows.

Reading the 65,000 float32 images of a preprocessed .npz and checking that each is a pixel took
0.8 s of every run's start, the same work each time. So the first process that finds them to be
pixels keeps the bytes beside the .npz (`<name>.pixels`, an .npz archive, stamped with the
.npz's size and modification time, written whole and renamed into place): a later process whose
.npz still has that size and time reads the 55 MB of bytes instead (the .npz itself is vouched
for by the preprocess stage's manifest, on the same size and time). Images that are not pixels
(standardised inputs, XOR points) get no byte copy and are read and checked each time, as before.
"""

import functools
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tasks.core.files import atomic_path
from tasks.training.models import N_CLASSES


def one_hot(labels, n_classes: int = N_CLASSES) -> tf.Tensor:
    """(n,) integer labels -> (n, n_classes) float32."""
    return tf.one_hot(tf.cast(labels, tf.int32), n_classes, dtype=tf.float32)


def as_tensor(x) -> tf.Tensor:
    """An array as a float32 tensor; a tensor as it is (no copy)."""
    return x if isinstance(x, tf.Tensor) else tf.convert_to_tensor(x, tf.float32)


# The float32 value of each byte: exactly what `features` computes from it (k / 255 in float32).
_BYTE_VALUES = np.arange(256, dtype=np.float32) / np.float32(255)
IMAGES = ("x_train", "x_val", "x_test")  # the image arrays of a preprocessed .npz
PIXELS_SUFFIX = ".pixels"  # an .npz archive, named so that no "*.npz" takes it for a split file


def pixels_of(x: np.ndarray, rows: int = 5_000) -> np.ndarray | None:
    """`x` as uint8 bytes if every value is k/255 (an 8-bit pixel scaled to [0, 1]) and turns back
    into exactly that float32 value; else None. Checked in slices of `rows` to keep the temporary
    copies small."""
    if x.dtype != np.float32:
        return None
    pixels = np.empty(x.shape, np.uint8)
    for i in range(0, len(x), rows):
        chunk = x[i : i + rows]
        # Out of [0, 255] or NaN, a value wraps or casts to some byte whose float32 value is not
        # the value: the comparison rejects it.
        with np.errstate(invalid="ignore"):
            scaled = np.rint(chunk * np.float32(255)).astype(np.uint8)
        if not np.array_equal(_BYTE_VALUES[scaled], chunk):
            return None
        pixels[i : i + rows] = scaled
    return pixels


def as_pixels(x: np.ndarray, rows: int = 5_000) -> tf.Tensor:
    """Images as a tensor: uint8 when every value is k/255 (8-bit pixels scaled to [0, 1]).

    TensorFlow keeps about twice a constant's size (55,000 float32 images: 341 MB resident; as
    uint8: 86 MB). `features` turns the bytes back into exactly the same float32 values per
    batch (the same float32 division), so training sees identical numbers. Anything else
    (standardised inputs, XOR points) stays float32.
    """
    return _tensor(x, pixels_of(x, rows))


def _tensor(x: np.ndarray, pixels: np.ndarray | None) -> tf.Tensor:
    """The images as their bytes when they are pixels (`pixels_of`), else as float32."""
    return tf.constant(x, tf.float32) if pixels is None else tf.constant(pixels)


def _stamp(path: Path) -> np.ndarray:
    stat = path.stat()
    return np.array([stat.st_size, stat.st_mtime_ns], np.int64)


def pixels_path(data_path: str | Path) -> Path:
    """Where the byte copy of a preprocessed .npz's images lives."""
    path = Path(data_path)
    return path.with_name(path.name.removesuffix(".npz") + PIXELS_SUFFIX)


def _byte_copy(data_path: Path) -> dict[str, np.ndarray] | None:
    """The images of the byte copy, if there is one made from the .npz as it is now."""
    try:
        with np.load(pixels_path(data_path), allow_pickle=False) as copy:
            if "stamp" not in copy.files or not set(copy.files) <= {"stamp", *IMAGES}:
                return None
            if not np.array_equal(copy["stamp"], _stamp(data_path)):
                return None  # the .npz was written again since
            images = {name: copy[name] for name in copy.files if name != "stamp"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if not images or any(x.dtype != np.uint8 for x in images.values()):
        return None
    return images


def _write_byte_copy(data_path: Path, images: dict[str, np.ndarray], stamp: np.ndarray) -> None:
    """Keep the bytes beside the .npz, whole or not at all (a read-only folder: not at all)."""
    try:
        with atomic_path(pixels_path(data_path), make_parent=False) as tmp, open(tmp, "xb") as f:
            np.savez(f, stamp=stamp, **images)
    except OSError:
        pass


def _images(path: Path) -> dict[str, tf.Tensor]:
    """Every image array of the .npz (those of IMAGES it holds) as a tensor (see as_pixels),
    from the byte copy when there is one for the .npz as it is."""
    images = _byte_copy(path)
    if images is not None:
        return {name: tf.constant(x) for name, x in images.items()}
    stamp = _stamp(path)
    with np.load(path, allow_pickle=False) as npz:
        floats = {name: npz[name] for name in IMAGES if name in npz.files}
    pixels = {name: pixels_of(x) for name, x in floats.items()}
    if all(p is not None for p in pixels.values()) and np.array_equal(stamp, _stamp(path)):
        _write_byte_copy(path, pixels, stamp)  # all pixels, and not rewritten while it was read
    return {name: _tensor(floats[name], pixels[name]) for name in floats}


@functools.lru_cache(maxsize=1)
def _splits(data_path: str) -> dict:
    """The .npz's images as tensors (`_images`) and its labels and class count (the small
    arrays, read in one opening), held for the process's next network.

    One copy per process instead of one per network: loading the 55,000 images anew for each of
    the grid's networks left the allocator holding several copies (peak RSS 1.9 GB, default grid).
    """
    splits: dict = dict(_images(Path(data_path)))
    with np.load(data_path, allow_pickle=False) as npz:
        for name in npz.files:
            if name not in IMAGES:
                splits[name] = npz[name]
    return splits


# The divisor of byte pixels, as a variable: Grappler rewrites division by a constant, x / 255,
# as x * (1 / 255), which rounds a third of the values differently from numpy's x / 255.
_PIXEL_MAX = tf.Variable(255.0, trainable=False, name="pixel_max")


def features(x: tf.Tensor) -> tf.Tensor:
    """float32 inputs from what as_pixels kept: exactly the values preprocessing wrote."""
    return tf.cast(x, tf.float32) / _PIXEL_MAX if x.dtype == tf.uint8 else x


def training_data(data_path: str) -> tuple:
    """((x_train, y_train, x_val, y_val), n_classes) of one .npz, images as tensors, kept for the
    next network (`_splits`)."""
    splits = _splits(data_path)
    data = (splits["x_train"], splits["y_train"], splits["x_val"], splits["y_val"])
    return data, int(splits["n_classes"])


def test_data(data_path: str) -> tuple[tf.Tensor, np.ndarray]:
    """x_test (as training holds images: see as_pixels) and y_test, read once per process."""
    splits = _splits(data_path)
    return splits["x_test"], splits["y_test"]
