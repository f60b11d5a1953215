"""Each network's test predictions as a small artifact on its child run, `test_predictions.npz`:
the predicted class and the true label of every test image (uint8, compressed: about 10 kB for
10,000 images). The report compares networks image by image from them (McNemar's test), so
`actlab report RUN_ID` needs nothing but MLflow.

The format alone, without MLflow: `tasks.tracking.runs` writes it, `tasks.tracking.records` reads
it back through MLflow, and `actlab runs` reads it straight from a local artifact folder.
"""

import functools
import io
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from tasks.core.files import file_identity

PREDICTIONS_FILE = "test_predictions.npz"
CONFUSION_FILE = "confusion_matrix.json"  # the test confusion matrix of a child run, as numbers


def encode(predicted: np.ndarray, labels: np.ndarray) -> bytes:
    """The artifact's bytes: two (n,) uint8 arrays, `predicted` and `label`."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or predicted.ndim != 1:
        raise ValueError(f"predictions {predicted.shape} and labels {labels.shape} must be (n,)")
    if predicted.size and max(int(predicted.max()), int(labels.max())) > 255:
        raise ValueError("classes above 255 do not fit the uint8 predictions artifact")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, predicted=predicted.astype(np.uint8), label=labels.astype(np.uint8))
    return buffer.getvalue()


def decode(path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(predicted, labels) from an artifact file; None if it is missing or not one."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["predicted"], npz["label"]
    except (OSError, KeyError, ValueError):
        return None


def decode_local(path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """`decode` of an artifact file on this machine, read once per process while the file stays
    the same (its device, inode, size and modification time): each seed round's decision
    compares the rounds before it again, and a finished run's predictions do not change. The
    arrays are shared, so read-only."""
    try:
        identity = file_identity(path)
    except OSError:
        return None
    return _decoded(str(path), identity)


@functools.lru_cache(maxsize=512)  # ~20 kB each for 10,000 test images
def _decoded(path: str, identity: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    found = decode(path)
    if found is not None:
        for array in found:
            array.setflags(write=False)
    return found


def local_artifacts(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts when it is on this machine (a file: URI or a plain path),
    else None (a tracking server's or cloud store's artifacts need MLflow to fetch)."""
    parts = urlsplit(artifact_uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "" and artifact_uri:
        return Path(artifact_uri)
    return None
