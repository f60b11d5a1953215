"""The four IDX files of a dataset: downloaded from public mirrors and verified against published
sha256 sums (kept under `data/raw/<source>/`, cached across runs), or used in place from a local
folder. Either way the dataset is identified by a digest of its decompressed content.
"""

import gzip
import hashlib
import http.client
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tasks.core.config import DATASETS, DataConfig
from tasks.core.files import atomic_path, sha256_file
from tasks.core.paths import IDX_FILES, raw_dir
from tasks.core.results import CACHED, RAN, RawDataset, StageOutcome
from tasks.data import DataError, cache
from tasks.data.idx import gzip_error
from tasks.data.xor import xor_recipe
from tasks.logs import run_logger

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

OFFLINE_HINT = (
    "offline or no mirror reachable: set data.source to a local folder holding the four "
    "MNIST-format IDX .gz files, e.g. --set data.source=/usr/share/datasets/fashion-mnist"
)


_CHUNK = 1 << 20  # bytes per read when streaming downloads and decompression
MANIFEST = "manifest.json"  # beside the raw files: what they are and their digest (data.cache)


class _WrongHash(Exception):
    """The mirror answered, but with other bytes: retrying it would give the same ones."""


def _fetch_to(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Stream `url` into a temporary file next to `dest`; move it to `dest` only once verified."""
    with atomic_path(dest) as tmp:
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
        if sha256_file(dest) == sha256:
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
            raise gzip_error(path, exc) from None
    return h.hexdigest()


def fetch_dataset(cfg: DataConfig) -> RawDataset:
    """The four IDX files of `cfg.source` (downloaded or used in place), their content digest, and
    the stage's verdict (cached or ran, and why)."""
    log = run_logger(__name__)
    source = cfg.source
    if source == "xor":  # generated, deterministic: identified by how it is made
        recipe, digest = xor_recipe()
        log.info("dataset xor: a generated cloud %s, digest %s", recipe, digest[:16])
        stage = StageOutcome(CACHED, "nothing to download: xor is generated")
        return RawDataset(source=source, name="xor", digest=digest, stage=stage)
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
        inputs = {"source": source, "files": {f.name: sha256_file(f) for f in files.values()}}
        stage_reason = None
    digest, stage = _dataset_digest(files, manifest, inputs, stage_reason)
    log.info("dataset %s from %s: digest %s", name, folder, digest[:16])
    log.info("download %s: %s", stage.status, stage.reason)
    return RawDataset(
        source=source,
        name=name,
        digest=digest,
        stage=stage,
        files={role: str(path) for role, path in files.items()},
    )


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
) -> tuple[str, StageOutcome]:
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
        return recorded, StageOutcome(CACHED, reason)
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
    return digest, StageOutcome(RAN, reason)
