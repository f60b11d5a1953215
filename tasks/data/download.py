"""The four IDX files of a dataset: downloaded from public mirrors with `pooch` and verified against
published sha256 sums (kept under `data/raw/<source>/`, cached across runs), or used in place from
a local folder. Either way the dataset is identified by a digest of its decompressed content.
"""

import gzip
import hashlib
import logging
import re
import sys
import time
import zlib
from pathlib import Path

import pooch
import requests

from tasks.core.config import DATASETS, DataConfig
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

# pooch tells of each download on a logger of its own that prints to stderr; this module logs what
# matters (which mirror, which attempt, what failed) through the run's logger instead.
pooch.get_logger().setLevel(logging.WARNING)


class _WrongHash(Exception):
    """The mirror answered, but with other bytes: retrying it would give the same ones."""


def _progressbar() -> bool:
    """pooch's tqdm bar on a terminal; none in a log file, where it would be noise."""
    return sys.stderr.isatty()


def _fetch_to(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """`url` to `dest` with pooch: streamed to a temporary file beside `dest`, moved to `dest` only
    once its sha256 matches (pooch removes the temporary file whatever happens)."""
    downloader = pooch.HTTPDownloader(
        progressbar=_progressbar(), chunk_size=_CHUNK, timeout=timeout
    )
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{sha256}",
            fname=dest.name,
            path=dest.parent,
            downloader=downloader,
        )
    except ValueError as exc:
        if "does not match the known hash" not in str(exc):
            raise
        got = re.search(r"but got ([0-9a-f]{64})", str(exc))
        raise _WrongHash(
            f"sha256 mismatch (sha256 {got.group(1) if got else 'unknown'}, expected {sha256}): "
            "not the published file (an error page, or a changed file on the mirror)"
        ) from None


def _describe_error(exc: BaseException, timeout: float) -> str:
    """One line for one failed attempt, e.g. "HTTP 404 Not Found", "timed out after 30 s"."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "truncated transfer (the connection ended before the announced length)"
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else exc
        inner = str(getattr(reason, "reason", reason))  # urllib3's MaxRetryError wraps the cause
        found = re.search(r"Failed to .*|\[Errno.*", inner)  # without urllib3's object reprs
        return found.group(0) if found else inner
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _final_answer(exc: BaseException) -> bool:
    """A 4xx (bar timeouts and rate limits) is the mirror's final word on this URL."""
    if not isinstance(exc, requests.HTTPError) or exc.response is None:
        return False
    code = exc.response.status_code
    return 400 <= code < 500 and code not in (408, 429)


def download_file(
    bases: list[str], filename: str, dest: Path, sha256: str, timeout: float, retries: int
) -> Path:
    """`dest`, verified against `sha256`: from the cache if it matches, else from the first mirror
    (of `bases`, each tried up to 1 + `retries` times) that serves the right bytes."""
    return _download_file(bases, filename, dest, sha256, timeout, retries)[0]


def _download_file(
    bases: list[str],
    filename: str,
    dest: Path,
    sha256: str,
    timeout: float,
    retries: int,
    record: dict | None = None,
) -> tuple[Path, str, dict]:
    """`download_file`, why, and the manifest's record of the file (data.cache.file_record). Why:
    "unchanged" (cached, and its size and mtime are those `record` has from its last check),
    "cached" (its sha256 checked now), "missing" (downloaded) or "corrupt" (downloaded again
    because the cached copy failed its sha256 check)."""
    log = run_logger(__name__)
    dest = Path(dest)
    why = "missing"
    if dest.is_file():
        digest, record, hashed = cache.known_sha256(dest, record)
        if digest == sha256:
            log.debug("cached %s (%s)", dest, "sha256 verified" if hashed else "as recorded")
            return dest, "cached" if hashed else "unchanged", record
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
            except (OSError, ValueError, requests.RequestException) as exc:
                error = _describe_error(exc, timeout)  # not `why`: that says why we downloaded
                failures.append(f"{url} (attempt {attempt}): {error}")
                log.warning("%s (attempt %d of %d): %s", url, attempt, retries + 1, error)
                if _final_answer(exc):
                    break
                if attempt <= retries:
                    time.sleep(0.2 * attempt)
            else:
                log.info("downloaded %s (sha256 verified)", url)
                return dest, why, cache.file_record(dest.stat(), sha256)  # pooch checked it
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
        manifest = folder / MANIFEST
        old = cache.read_manifest(manifest)
        files, records, stage_reason, unchanged = _download_all(cfg, folder, _file_records(old))
        inputs = {"source": source, "files": {n: SHA256[source][n] for n in IDX_FILES.values()}}
    else:
        folder = Path(source)
        name = folder.name
        files = {role: folder / filename for role, filename in IDX_FILES.items()}
        manifest = raw_dir(cfg.dir, "local") / _folder_key(folder) / MANIFEST
        old = cache.read_manifest(manifest)
        # The gzip'd bytes' sha256 is cheap to take, and not taken again while the files keep
        # their size and mtime; the digest (decompressed) is not cheap.
        recorded = _file_records(old)
        records = {f.name: cache.known_sha256(f, recorded.get(f.name))[1] for f in files.values()}
        inputs = {"source": source, "files": {n: r["sha256"] for n, r in records.items()}}
        unchanged = f"all {len(files)} files of {source} unchanged (sha256 as recorded)"
        stage_reason = None
    digest, stage = _dataset_digest(files, manifest, old, inputs, records, stage_reason, unchanged)
    log.info("dataset %s from %s: digest %s", name, folder, digest[:16])
    log.info("download %s: %s", stage.status, stage.reason)
    return RawDataset(
        source=source,
        name=name,
        digest=digest,
        stage=stage,
        files={role: str(path) for role, path in files.items()},
    )


def _file_records(manifest: dict | None) -> dict[str, dict]:
    """Per file name, what a raw manifest recorded of it (size, mtime, sha256), if anything."""
    records = (manifest or {}).get("output", {}).get("files")
    return records if isinstance(records, dict) else {}


def _download_all(
    cfg: DataConfig, folder: Path, recorded: dict[str, dict]
) -> tuple[dict[str, Path], dict[str, dict], str | None, str]:
    """The four files of a named dataset, verified (`recorded`: what the manifest has of each);
    their records for the manifest; what was fetched (None: nothing was); and how the cached
    files were found good."""
    bases = list(cfg.mirrors or MIRRORS[cfg.source])
    files, records, fetched, hashed = {}, {}, [], 0
    for role, filename in IDX_FILES.items():
        sha = SHA256[cfg.source][filename]
        path, why, records[filename] = _download_file(
            bases,
            filename,
            folder / filename,
            sha,
            cfg.timeout_seconds,
            cfg.retries,
            recorded.get(filename),
        )
        files[role] = path
        hashed += why != "unchanged"
        if why == "missing":
            fetched.append(f"{filename} (not cached)")
        elif why == "corrupt":
            fetched.append(f"{filename} (the cached copy failed its sha256 check)")
    n = len(files)
    if hashed:
        found = f"all {n} files present and verified (sha256)"
    else:
        found = f"all {n} files present, unchanged since verified (size and mtime as recorded)"
    return files, records, ("downloaded " + ", ".join(fetched)) if fetched else None, found


def _folder_key(folder: Path) -> str:
    """A folder name for the manifest of a local source: the hash of its absolute path."""
    return hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]


def _dataset_digest(
    files: dict[str, Path],
    manifest: Path,
    old: dict | None,
    inputs: dict,
    records: dict[str, dict],
    ran_because: str | None,
    unchanged: str,
) -> tuple[str, StageOutcome]:
    """The content digest, from the manifest `old` when the files' sha256 sums are those it
    recorded, else computed; the manifest written with the files' `records` whenever they
    changed; and the download stage's verdict (`unchanged`: its reason when cached)."""
    recorded = (old or {}).get("output", {}).get("digest")
    n = len(files)
    if ran_because is None and old is not None and old["inputs"] == inputs and recorded:
        if records != _file_records(old):  # hashed again: the next run need not
            cache.refresh_manifest(manifest, inputs, {"digest": recorded, "files": records})
        return recorded, StageOutcome(CACHED, unchanged)
    digest = _digest(files)
    cache.write_manifest(manifest, inputs, {"digest": digest, "files": records})
    if ran_because is not None:
        reason = ran_because
    elif old is None:
        reason = f"no manifest yet for {inputs['source']}: all {n} files read and recorded"
    elif old["inputs"] != inputs:
        reason = "; ".join(cache.diff_inputs(old["inputs"], inputs))
    else:
        reason = f"the manifest {manifest} had no digest: all {n} files read and recorded"
    return digest, StageOutcome(RAN, reason)
