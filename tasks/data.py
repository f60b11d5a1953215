"""Get the MNIST-format data and turn it into train/validation/test arrays on disk.

Two stages, each a plain function wrapped by a thin Prefect task:
- `fetch_dataset` / `download_dataset`: the four gzip'd IDX files, downloaded from public mirrors
  and verified against published sha256 sums (kept under `data/raw/<source>/`, cached across runs),
  or used in place from a local folder. Either way the dataset is identified by a digest of its
  decompressed content.
- `preprocess_dataset` / `preprocess`: pixels flattened to 784 floats in [0, 1] (or standardised
  per pixel with `preprocess.standardize`), the first
  `val_size` training images held out for validation (as the tutorial's `input_data.read_data_sets`
  does), written once to `data/processed/<hash>.npz`, named by the hash of data and settings.
"""

import gzip
import hashlib
import http.client
import json
import os
import secrets
import struct
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import cache
from tasks.config import DATASETS, DataConfig, PreprocessConfig
from tasks.logs import run_logger
from tasks.paths import IDX_FILES, processed_dir, raw_dir

# Base URLs, tried in order; each serves the four files under their published names.
MIRRORS = {
    "mnist": [
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ],
    "fashion_mnist": [
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

# sha256 of the .gz bytes, as published in TensorFlow Datasets' url_checksums.
SHA256 = {
    "mnist": {
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
    },
    "fashion_mnist": {
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
    },
}

# Bump when preprocess_dataset's output changes for the same input, so old .npz files go unused.
PREPROCESS_VERSION = 2  # 2: n_classes stored beside the splits

# data.source: xor. As many points as MNIST has images (training file, test file), so the same
# val_size and batch size work; the noise is the std of each coordinate around its corner.
XOR_SIZES = (60_000, 10_000)
XOR_NOISE = 0.1
XOR_VERSION = 1  # part of the digest: bump when xor_cloud changes

SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "n_classes")

OFFLINE_HINT = (
    "offline or no mirror reachable: set data.source to a local folder holding the four "
    "MNIST-format IDX .gz files, e.g. --set data.source=/usr/share/datasets/fashion-mnist"
)

_CHUNK = 1 << 20  # bytes per read when streaming downloads and decompression
MANIFEST = "manifest.json"  # beside the raw files: what they are and their digest (tasks.cache)
_IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x00000803: ubyte, 3 dims; 0x00000801: 1 dim
_IMAGE_SHAPE = (28, 28)
_N_CLASSES = 10


class DataError(RuntimeError):
    """A data file that cannot be fetched or read. The message names the file and what to do."""


class _WrongHash(Exception):
    """The mirror answered, but with other bytes: retrying it would give the same ones."""


def _fetch_to(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Stream `url` into a temporary file next to `dest`; move it to `dest` only once verified."""
    tmp = dest.with_name(f"{dest.name}.part-{secrets.token_hex(4)}")
    try:
        h = hashlib.sha256()
        size = 0
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "xb") as out:
            expected_size = resp.headers.get("Content-Length")
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if expected_size is not None and expected_size.isdigit() and size != int(expected_size):
            raise http.client.IncompleteRead(b"", int(expected_size) - size)
        got = h.hexdigest()
        if got != sha256:
            raise _WrongHash(
                f"sha256 mismatch ({size} bytes, sha256 {got}, expected {sha256}): "
                "not the published file (an error page, or a changed file on the mirror)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _describe_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, http.client.IncompleteRead):
        missing = f" ({exc.expected} bytes missing)" if exc.expected else ""
        return f"truncated transfer{missing}"
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)
    ):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def download_file(
    bases: list[str], filename: str, dest: Path, sha256: str, timeout: float, retries: int
) -> Path:
    """`dest`, verified against `sha256`: from the cache if it matches, else from the first mirror
    (of `bases`, each tried up to 1 + `retries` times) that serves the right bytes."""
    return _download_file(bases, filename, dest, sha256, timeout, retries)[0]


def _download_file(
    bases: list[str], filename: str, dest: Path, sha256: str, timeout: float, retries: int
) -> tuple[Path, str]:
    """`download_file`, and why: "cached", "missing" (downloaded) or "corrupt" (downloaded again
    because the cached copy failed its sha256 check)."""
    log = run_logger(__name__)
    dest = Path(dest)
    why = "missing"
    if dest.is_file():
        if cache.sha256_file(dest) == sha256:
            log.debug("cached %s (sha256 verified)", dest)
            return dest, "cached"
        log.warning("%s does not match its sha256; downloading it again", dest)
        dest.unlink()
        why = "corrupt"
    dest.parent.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    for base in bases:
        url = base if base.endswith("/") else base + "/"
        url += filename
        for attempt in range(1, retries + 2):
            try:
                _fetch_to(url, dest, sha256, timeout)
            except _WrongHash as exc:
                failures.append(f"{url}: {exc}")
                log.warning("%s: %s; trying the next mirror", url, exc)
                break
            except (OSError, http.client.HTTPException, ValueError) as exc:
                why = _describe_error(exc, timeout)
                failures.append(f"{url} (attempt {attempt}): {why}")
                log.warning("%s (attempt %d of %d): %s", url, attempt, retries + 1, why)
                # A 4xx (bar timeouts and rate limits) is the mirror's final word on this URL.
                if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500:
                    if exc.code not in (408, 429):
                        break
                if attempt <= retries:
                    time.sleep(0.2 * attempt)
            else:
                log.info("downloaded %s (sha256 verified)", url)
                return dest, why
    tried = "\n".join(f"  - {f}" for f in failures) or "  (no mirror URLs given)"
    raise DataError(f"could not download {filename} to {dest}:\n{tried}\n{OFFLINE_HINT}")


def _gzip_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, EOFError):
        problem = "truncated (the gzip stream ends early)"
    elif isinstance(exc, gzip.BadGzipFile):
        problem = f"not a valid gzip file ({exc})"
    else:
        problem = f"corrupt gzip data ({exc})"
    return DataError(
        f"{path}: {problem}; replace it with a complete copy (delete it if it was downloaded, "
        "so the next run fetches it again) or point data.source elsewhere"
    )


def _digest(files: dict[str, Path]) -> str:
    """sha256 over each role name + its decompressed bytes, in IDX_FILES order.

    Decompressed, because the same images gzip'd by another tool (Debian's Fashion-MNIST) differ in
    the gzip header and must still count as the same dataset."""
    h = hashlib.sha256()
    for role in IDX_FILES:
        path = files[role]
        h.update(role.encode())
        try:
            with gzip.open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise _gzip_error(path, exc) from None
    return h.hexdigest()


def fetch_dataset(cfg: DataConfig) -> dict:
    """The four IDX files of `cfg.source` (downloaded or used in place), their content digest, and
    the stage's verdict (`stage`: cached or ran, and why)."""
    log = run_logger(__name__)
    source = cfg.source
    if source == "xor":  # generated, deterministic: identified by how it is made
        recipe = json.dumps({"sizes": XOR_SIZES, "noise": XOR_NOISE, "version": XOR_VERSION})
        digest = hashlib.sha256(recipe.encode()).hexdigest()
        log.info("dataset xor: a generated cloud %s, digest %s", recipe, digest[:16])
        stage = cache.outcome(cache.CACHED, "nothing to download: xor is generated")
        return {"source": source, "name": "xor", "files": {}, "digest": digest, "stage": stage}
    if source in DATASETS:
        name = source
        folder = raw_dir(cfg.dir, source)
        files, stage_reason = _download_all(cfg, folder)
        manifest = folder / MANIFEST
        inputs = {"source": source, "files": {n: SHA256[source][n] for n in IDX_FILES.values()}}
    else:
        folder = Path(source)
        name = folder.name
        files = {role: folder / filename for role, filename in IDX_FILES.items()}
        manifest = raw_dir(cfg.dir, "local") / _folder_key(folder) / MANIFEST
        # The gzip'd bytes' sha256 is cheap to take; the digest (decompressed) is not.
        inputs = {"source": source, "files": {f.name: cache.sha256_file(f) for f in files.values()}}
        stage_reason = None
    digest, stage = _dataset_digest(files, manifest, inputs, stage_reason)
    log.info("dataset %s from %s: digest %s", name, folder, digest[:16])
    log.info("download %s: %s", stage["status"], stage["reason"])
    return {
        "source": source,
        "name": name,
        "files": {role: str(path) for role, path in files.items()},
        "digest": digest,
        "stage": stage,
    }


def _download_all(cfg: DataConfig, folder: Path) -> tuple[dict[str, Path], str | None]:
    """The four files of a named dataset, verified; and what was fetched (None: nothing was)."""
    bases = list(cfg.mirrors or MIRRORS[cfg.source])
    files, fetched = {}, []
    for role, filename in IDX_FILES.items():
        sha = SHA256[cfg.source][filename]
        path, why = _download_file(
            bases, filename, folder / filename, sha, cfg.timeout_seconds, cfg.retries
        )
        files[role] = path
        if why == "missing":
            fetched.append(f"{filename} (not cached)")
        elif why == "corrupt":
            fetched.append(f"{filename} (the cached copy failed its sha256 check)")
    return files, ("downloaded " + ", ".join(fetched)) if fetched else None


def _folder_key(folder: Path) -> str:
    """A folder name for the manifest of a local source: the hash of its absolute path."""
    return hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]


def _dataset_digest(
    files: dict[str, Path], manifest: Path, inputs: dict, ran_because: str | None
) -> tuple[str, dict]:
    """The content digest, from the manifest when the files' sha256 sums are those it recorded,
    else computed (and recorded); and the download stage's verdict."""
    old = cache.read_manifest(manifest)
    recorded = (old or {}).get("output", {}).get("digest")
    n = len(files)
    if ran_because is None and old is not None and old["inputs"] == inputs and recorded:
        if inputs["source"] in DATASETS:
            reason = f"all {n} files present and verified (sha256)"
        else:
            reason = f"all {n} files of {inputs['source']} unchanged (sha256 as recorded)"
        return recorded, cache.outcome(cache.CACHED, reason)
    digest = _digest(files)
    cache.write_manifest(manifest, inputs, {"digest": digest})
    if ran_because is not None:
        reason = ran_because
    elif old is None:
        reason = f"no manifest yet for {inputs['source']}: all {n} files read and recorded"
    elif old["inputs"] != inputs:
        reason = "; ".join(cache.diff_inputs(old["inputs"], inputs))
    else:
        reason = f"the manifest {manifest} had no digest: all {n} files read and recorded"
    return digest, cache.outcome(cache.RAN, reason)


def read_idx(path: Path, kind: Literal["images", "labels"]) -> np.ndarray:
    """A gzip'd IDX file as uint8: images (n, 28, 28) or labels (n,), checked against its header."""
    path = Path(path)
    expected_magic = _IDX_MAGIC[kind]
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise _gzip_error(path, exc) from None

    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        swapped = {v: k for k, v in _IDX_MAGIC.items()}.get(magic)
        hint = f" (that is an IDX {swapped} file: are the files swapped?)" if swapped else ""
        raise DataError(
            f"{path}: found magic 0x{magic:08x}, expected 0x{expected_magic:08x} for IDX {kind}"
            f"{hint}; data.source must hold MNIST-format IDX files"
        )
    if len(data) < header:
        raise DataError(f"{path}: truncated: {len(data)} bytes, the IDX header alone is {header}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if kind == "images" and tuple(dims[1:]) != _IMAGE_SHAPE:
        raise DataError(
            f"{path}: images are {dims[1]}×{dims[2]}, expected 28×28 (MNIST format); "
            "data.source must hold 28×28 images"
        )
    expected_len = int(np.prod(dims, dtype=np.int64))
    found_len = len(data) - header
    if found_len != expected_len:
        problem = "truncated" if found_len < expected_len else "extra bytes after the data"
        raise DataError(
            f"{path}: {problem}: the header announces {dims[0]} {kind} ({expected_len} bytes), "
            f"the file holds {found_len} bytes; replace it with a complete copy"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and array.size and int(array.max()) >= _N_CLASSES:
        bad = int(np.count_nonzero(array >= _N_CLASSES))
        raise DataError(
            f"{path}: {bad} labels outside 0..9 (largest {int(array.max())}); "
            "MNIST-format labels are the digits 0 to 9"
        )
    return array


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


def _features(raw: dict) -> tuple:
    """(x_train, y_train, x_test, y_test, n_classes, name of the training file) of a raw dataset."""
    if raw["source"] == "xor":
        x, y = xor_cloud(XOR_SIZES[0], seed=0)
        x_test, y_test = xor_cloud(XOR_SIZES[1], seed=1)
        return x, y, x_test, y_test, 2, "(generated XOR cloud)"
    files = raw["files"]
    train_images, train_labels = _read_split(files, "train")
    test_images, test_labels = _read_split(files, "test")
    x, x_test = _to_features(train_images), _to_features(test_images)
    return x, train_labels, x_test, test_labels, _N_CLASSES, files["train_images"]


def _standardized(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each pixel to zero mean, unit variance, by the training images' statistics (what SELU's
    self-normalisation assumes of its inputs). Constant pixels (std 0) are only centred."""
    mean = splits["x_train"].mean(axis=0)  # (784,)
    std = splits["x_train"].std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    return {
        k: ((splits[k] - mean) / std).astype(np.float32) for k in ("x_train", "x_val", "x_test")
    }


def preprocess_dataset(raw: dict, cfg: PreprocessConfig, data_dir: Path) -> str:
    """Path of the .npz holding x/y for train, val and test; built once per (data, settings)."""
    return prepare_splits(raw, cfg, data_dir)["path"]


def _preprocess_inputs(raw: dict, cfg: PreprocessConfig) -> dict:
    """Everything the .npz depends on, as its manifest records it."""
    return {
        "dataset": {"source": raw["source"], "digest": raw["digest"]},
        "preprocess": cfg.model_dump(mode="json"),
        "code_version": {"PREPROCESS_VERSION": PREPROCESS_VERSION},
    }


def _cache_check(path: Path, manifest: Path, inputs: dict) -> tuple[bool, str]:
    """(usable, why) for the cached .npz at `path`: its content hash against its manifest."""
    if not path.is_file():
        previous = cache.latest_manifest(path.parent)
        if previous is None:
            return False, "no preprocessed data cached yet"
        changes = cache.diff_inputs(previous["inputs"], inputs)
        return False, "; ".join(changes) or "no cached file for these inputs"
    recorded = cache.read_manifest(manifest)
    if recorded is None:  # made before manifests existed: trust it only if it reads back whole
        if _has_splits(path):
            return True, f"{path} reads back whole (manifest written now)"
        return False, f"cached file {path} is unreadable, rebuilt"
    if cache.sha256_file(path) != recorded.get("output", {}).get("sha256"):
        return False, f"cached file {path} failed its hash check, rebuilt"
    return True, f"inputs unchanged, {path} verified (sha256)"


def prepare_splits(raw: dict, cfg: PreprocessConfig, data_dir: Path) -> dict:
    """{"path": the .npz, "stage": cached or ran, and why}. The .npz is named by the hash of its
    inputs and reused while its content matches the sha256 its manifest recorded."""
    log = run_logger(__name__)
    out_dir = processed_dir(data_dir)
    name = _processed_name(raw["digest"], cfg)
    path = out_dir / f"{name}.npz"
    manifest = out_dir / f"{name}.json"
    inputs = _preprocess_inputs(raw, cfg)
    usable, reason = _cache_check(path, manifest, inputs)
    if usable:
        if cache.read_manifest(manifest) is None:
            cache.write_manifest(manifest, inputs, {"sha256": cache.sha256_file(path)})
        log.info("preprocess cached: %s", reason)
        return {"path": str(path), "stage": cache.outcome(cache.CACHED, reason)}
    log.info("preprocess ran: %s", reason)
    _build_splits(raw, cfg, path)
    cache.write_manifest(manifest, inputs, {"sha256": cache.sha256_file(path)})
    return {"path": str(path), "stage": cache.outcome(cache.RAN, reason)}


def _build_splits(raw: dict, cfg: PreprocessConfig, path: Path) -> None:
    """Read the raw data, split and scale it, and write it to `path` (temp file + rename)."""
    log = run_logger(__name__)
    out_dir = path.parent
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

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.part-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:  # a file object, so numpy does not append ".npz" to the name
            np.savez(f, **splits)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "preprocessed %s: %d train, %d validation, %d test images -> %s",
        raw.get("name", "dataset"),
        n_train - val,
        val,
        len(x_test),
        path,
    )


@task(name="download_dataset", cache_policy=NO_CACHE)
def download_dataset(cfg: DataConfig) -> dict:
    """Prefect task: `fetch_dataset`."""
    return fetch_dataset(cfg)


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(raw: dict, cfg: PreprocessConfig, data_dir: Path) -> dict:
    """Prefect task: `prepare_splits` ({"path": the .npz, "stage": cached or ran, and why})."""
    return prepare_splits(raw, cfg, data_dir)
