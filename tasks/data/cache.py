"""Cross-run caching that explains itself: a small JSON manifest beside each cached artifact.

A manifest records what made the artifact (its inputs: source, file hashes, settings, code version)
and what came out (the content hash of the output). The next run compares its own inputs with the
manifest and says, per stage, `cached` or `ran` and why, e.g.
"preprocess ran: preprocess.val_size changed 5000 -> 10000" or
"download cached: all 4 files present and verified". A cached file whose content no longer matches
its manifest is rebuilt, and the reason says so.

A manifest also records, per file it vouches for, the file's size and mtime when its sha256 was
last checked (`file_record`). While both are unchanged the recorded sha256 is trusted and the file
is not read again (`known_sha256`); when either differs the file is hashed again, and the log says
so. Like git's index, a record is only trusted if the file's mtime was already older than
`SETTLE_NS` when it was recorded: a file changed within the file system's timestamp granularity of
that check could otherwise keep its recorded mtime.
"""

import json
import os
import time
from pathlib import Path

from tasks.core.dotted import flatten
from tasks.core.files import sha256_file, write_text_atomic
from tasks.logs import run_logger

MANIFEST_VERSION = 1  # layout of the manifest file itself
# How much older than the check that recorded it a file's mtime must be for its size and mtime to
# vouch for its content: above the timestamp granularity of any usual file system (ext4, XFS,
# tmpfs, NFS; FAT's is 2 s), so any later write gives the file another mtime.
SETTLE_NS = 2_000_000_000


def read_manifest(path: Path) -> dict | None:
    """The manifest at `path`, or None if it is missing or unreadable (then nothing is trusted)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("inputs"), dict):
        return None
    return record


def write_manifest(path: Path, inputs: dict, output: dict) -> dict:
    """Write {inputs, output, created} atomically (temp file + rename) and return it."""
    record = {
        "manifest_version": MANIFEST_VERSION,
        "inputs": inputs,
        "output": output,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_text_atomic(Path(path), json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def refresh_manifest(path: Path, inputs: dict, output: dict) -> None:
    """Write the manifest of a stage that was cached, to keep what it found out (the files'
    sizes and mtimes after hashing them again). Only an optimisation: a write that fails (a full
    disk, a read-only data folder) is logged and the run goes on; the next run hashes again."""
    try:
        write_manifest(path, inputs, output)
    except OSError as exc:
        run_logger(__name__).warning("could not update %s (%s); carrying on", path, exc)


def _short(value) -> str:
    """A value as a reader wants it in one line: hashes cut to 12 characters."""
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return text


def diff_inputs(old: dict, new: dict) -> list[str]:
    """What changed between two input records, one phrase per dotted key, in key order.

    >>> diff_inputs({"preprocess": {"val_size": 5000}}, {"preprocess": {"val_size": 10000}})
    ['preprocess.val_size changed 5000 -> 10000']
    """
    a, b = flatten(old), flatten(new)
    changes = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            changes.append(f"{key} is new ({_short(b[key])})")
        elif key not in b:
            changes.append(f"{key} is gone (was {_short(a[key])})")
        elif a[key] != b[key]:
            changes.append(f"{key} changed {_short(a[key])} -> {_short(b[key])}")
    return changes


def latest_manifest(folder: Path, pattern: str = "*.json") -> dict | None:
    """The newest readable manifest in `folder` (by its `created` stamp, then file mtime)."""
    found = []
    for path in Path(folder).glob(pattern):
        record = read_manifest(path)
        if record is not None:
            found.append((record.get("created", ""), path.stat().st_mtime_ns, record))
    if not found:
        return None
    return max(found, key=lambda item: item[:2])[2]


def file_record(stat: os.stat_result, sha256: str, checked_ns: int | None = None) -> dict:
    """What a manifest keeps of a file whose content had `sha256` when it had `stat` (taken
    before hashing, so that a write during the hashing changes the mtime the next run sees)."""
    return {
        "sha256": sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "checked_ns": time.time_ns() if checked_ns is None else checked_ns,
    }


def _vouches(stat: os.stat_result, record: dict) -> bool:
    """Whether `record` still vouches for the file: same size and mtime, settled when checked."""
    try:
        return (
            record["size"] == stat.st_size
            and record["mtime_ns"] == stat.st_mtime_ns
            and record["checked_ns"] - record["mtime_ns"] >= SETTLE_NS
            and len(record["sha256"]) == 64
        )
    except (KeyError, TypeError):
        return False


def known_sha256(path: Path, record: dict | None) -> tuple[str, dict, bool]:
    """The sha256 of `path`, the record to keep of it, and whether it was read (hashed) now.

    The recorded sha256 when `record` still vouches for the file (size and mtime as recorded, and
    the mtime settled when it was recorded); else the file is hashed, and the log says why when
    there was a record to go by."""
    path = Path(path)
    stat, checked_ns = path.stat(), time.time_ns()
    if record is not None and _vouches(stat, record):
        return record["sha256"], record, False
    if record is not None and "size" in record and "mtime_ns" in record:
        if (record["size"], record["mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
            why = "size/mtime changed"
        else:
            why = "it had changed just before its last check, too recently to trust its mtime"
        run_logger(__name__).info("re-hashing %s: %s", path, why)
    digest = sha256_file(path)
    return digest, file_record(stat, digest, checked_ns), True
