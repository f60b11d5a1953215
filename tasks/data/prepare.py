"""Preprocessing: pixels flattened to 784 floats in [0, 1] (or standardised per pixel with
`preprocess.standardize`), the first `val_size` training images held out for validation (as the
tutorial's `input_data.read_data_sets` does), written once to `data/processed/<hash>.npz`, named by
the hash of the data and the settings, and reused while its content matches its manifest.
"""

import dataclasses
import hashlib
import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tasks.core.config import PreprocessConfig
from tasks.core.files import atomic_path
from tasks.core.paths import processed_dir
from tasks.core.results import CACHED, RAN, PreparedData, RawDataset, SplitDigest, StageOutcome
from tasks.data import DataError, cache
from tasks.data.idx import N_CLASSES, read_idx
from tasks.data.xor import xor_splits
from tasks.logs import run_logger

# Bump when preprocess_dataset's output changes for the same input, so old .npz files go unused.
PREPROCESS_VERSION = 2  # 2: n_classes stored beside the splits

SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "n_classes")
SPLITS = ("train", "val", "test")


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 over the WHOLE arrays: dtype, shape and every byte (MLflow's own numpy digest
    hashes only the first values, so two datasets differing further in would look the same)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def split_digests(arrays: Mapping[str, np.ndarray]) -> dict[str, SplitDigest]:
    """Per split, the digest of its x then y (`array_digest`) and their dtypes and shapes."""
    digests = {}
    for split in SPLITS:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        digests[split] = SplitDigest(
            array_digest(x, y), x.dtype.str, tuple(x.shape), y.dtype.str, tuple(y.shape)
        )
    return digests


def _splits_record(digests: dict[str, SplitDigest]) -> dict:
    return {split: dataclasses.asdict(d) for split, d in digests.items()}


def _recorded_splits(output: dict | None) -> dict[str, SplitDigest] | None:
    """The split digests a manifest's output holds; None when it has none (an older manifest)."""
    try:
        found = {
            split: SplitDigest(
                sha256=r["sha256"],
                x_dtype=r["x_dtype"],
                x_shape=tuple(r["x_shape"]),
                y_dtype=r["y_dtype"],
                y_shape=tuple(r["y_shape"]),
            )
            for split, r in output["splits"].items()
        }
    except (KeyError, TypeError, AttributeError):
        return None
    return found if set(found) == set(SPLITS) else None


def _processed_name(digest: str, cfg: PreprocessConfig) -> str:
    key = {
        "digest": digest,
        "preprocess": cfg.model_dump(mode="json"),
        "version": PREPROCESS_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _has_splits(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return set(SPLIT_KEYS) <= set(npz.files)
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        run_logger(__name__).warning("%s is unreadable (%s); preprocessing again", path, exc)
        return False


def _read_split(files: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
    images = read_idx(Path(images_path), "images")
    labels = read_idx(Path(labels_path), "labels")
    if len(images) != len(labels):
        raise DataError(
            f"{split} files disagree: {images_path} holds {len(images)} images but "
            f"{labels_path} holds {len(labels)} labels; they must come from the same dataset"
        )
    return images, labels


def _to_features(images: np.ndarray) -> np.ndarray:
    # (n, 28, 28) uint8 -> (n, 784) float32 in [0, 1]
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def _features(raw: RawDataset) -> tuple:
    """(x_train, y_train, x_test, y_test, n_classes, name of the training file) of a raw dataset."""
    if raw.source == "xor":
        return *xor_splits(), 2, "(generated XOR cloud)"
    files = raw.files
    train_images, train_labels = _read_split(files, "train")
    test_images, test_labels = _read_split(files, "test")
    x, x_test = _to_features(train_images), _to_features(test_images)
    return x, train_labels, x_test, test_labels, N_CLASSES, files["train_images"]


def _standardized(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each pixel to zero mean, unit variance, by the training images' statistics (what SELU's
    self-normalisation assumes of its inputs). Constant pixels (std 0) are only centred."""
    mean = splits["x_train"].mean(axis=0)  # (784,)
    std = splits["x_train"].std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    return {
        k: ((splits[k] - mean) / std).astype(np.float32) for k in ("x_train", "x_val", "x_test")
    }


def preprocess_dataset(raw: RawDataset, cfg: PreprocessConfig, data_dir: Path) -> str:
    """Path of the .npz holding x/y for train, val and test; built once per (data, settings)."""
    return prepare_splits(raw, cfg, data_dir).path


def _preprocess_inputs(raw: RawDataset, cfg: PreprocessConfig) -> dict:
    """Everything the .npz depends on, as its manifest records it."""
    return {
        "dataset": {"source": raw.source, "digest": raw.digest},
        "preprocess": cfg.model_dump(mode="json"),
        "code_version": {"PREPROCESS_VERSION": PREPROCESS_VERSION},
    }


def _cache_check(path: Path, recorded: dict | None, inputs: dict) -> tuple[bool, str, dict]:
    """(usable, why, the manifest output to keep) for the cached .npz at `path`: its content hash
    against its manifest `recorded`; the hash is the recorded one while the file keeps the size
    and mtime recorded with it (data.cache.known_sha256)."""
    if not path.is_file():
        previous = cache.latest_manifest(path.parent)
        if previous is None:
            return False, "no preprocessed data cached yet", {}
        changes = cache.diff_inputs(previous["inputs"], inputs)
        return False, "; ".join(changes) or "no cached file for these inputs", {}
    if recorded is None:  # made before manifests existed: trust it only if it reads back whole
        if _has_splits(path):
            output = cache.known_sha256(path, None)[1]
            return True, f"{path} reads back whole (manifest written now)", output
        return False, f"cached file {path} is unreadable, rebuilt", {}
    output = recorded.get("output", {})
    digest, record, hashed = cache.known_sha256(path, output)
    if digest != output.get("sha256"):
        return False, f"cached file {path} failed its hash check, rebuilt", {}
    if not hashed:
        why = f"inputs unchanged, {path} unchanged since verified (size and mtime as recorded)"
        return True, why, output
    return True, f"inputs unchanged, {path} verified (sha256)", {**output, **record}


def prepare_splits(raw: RawDataset, cfg: PreprocessConfig, data_dir: Path) -> PreparedData:
    """The .npz (named by the hash of its inputs and reused while its content matches the sha256
    its manifest recorded), its splits' digests, and the stage's verdict: cached or ran, and why.

    A cached .npz whose size and mtime are those its manifest recorded is not read at all: its
    sha256 and its splits' digests (for MLflow's dataset inputs) come from the manifest."""
    log = run_logger(__name__)
    out_dir = processed_dir(data_dir)
    name = _processed_name(raw.digest, cfg)
    path = out_dir / f"{name}.npz"
    manifest = out_dir / f"{name}.json"
    inputs = _preprocess_inputs(raw, cfg)
    recorded = cache.read_manifest(manifest)
    usable, reason, output = _cache_check(path, recorded, inputs)
    if usable:
        splits = _recorded_splits(output)
        if splits is None:  # a manifest from before split digests were kept: read once
            with np.load(path, allow_pickle=False) as npz:
                splits = split_digests(npz)
            output = {**output, "splits": _splits_record(splits)}
        if recorded is None or output != recorded.get("output"):
            cache.refresh_manifest(manifest, inputs, output)  # the next run need not read it
        log.info("preprocess cached: %s", reason)
        return PreparedData(path=str(path), stage=StageOutcome(CACHED, reason), splits=splits)
    log.info("preprocess ran: %s", reason)
    splits = _build_splits(raw, cfg, path)
    record = cache.known_sha256(path, None)[1]
    cache.write_manifest(manifest, inputs, {**record, "splits": _splits_record(splits)})
    return PreparedData(path=str(path), stage=StageOutcome(RAN, reason), splits=splits)


def _build_splits(raw: RawDataset, cfg: PreprocessConfig, path: Path) -> dict[str, SplitDigest]:
    """Read the raw data, split and scale it, and write it to `path` (temp file + rename); the
    splits' digests, taken from the arrays written."""
    log = run_logger(__name__)
    x, y, x_test, y_test, n_classes, train_file = _features(raw)
    n_train, val = len(x), cfg.val_size
    if val >= n_train:
        raise DataError(
            f"preprocess.val_size = {val}: must be smaller than the {n_train} images of the "
            f"training file {train_file}; lower preprocess.val_size"
        )
    # The tutorial's read_data_sets: validation is the first val_size training images.
    splits = {
        "x_train": x[val:],
        "y_train": y[val:],
        "x_val": x[:val],
        "y_val": y[:val],
        "x_test": x_test,
        "y_test": y_test,
        "n_classes": np.array(n_classes),
    }
    if cfg.standardize:
        splits.update(_standardized(splits))

    digests = split_digests(splits)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        np.savez(f, **splits)  # a file object, so numpy does not append ".npz" to the name
    log.info(
        "preprocessed %s: %d train, %d validation, %d test images -> %s",
        raw.name,
        n_train - val,
        val,
        len(x_test),
        path,
    )
    return digests
