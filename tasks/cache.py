"""Cross-run caching that explains itself: a small JSON manifest beside each cached artifact.

A manifest records what made the artifact (its inputs: source, file hashes, settings, code version)
and what came out (the content hash of the output). The next run compares its own inputs with the
manifest and says, per stage, `cached` or `ran` and why, e.g.
"preprocess ran: preprocess.val_size changed 5000 -> 10000" or
"download cached: all 4 files present and verified". A cached file whose content no longer matches
its manifest is rebuilt, and the reason says so.
"""

import hashlib
import json
import os
import secrets
import time
from pathlib import Path

_CHUNK = 1 << 20  # bytes per read when hashing
MANIFEST_VERSION = 1  # layout of the manifest file itself

CACHED, RAN = "cached", "ran"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def outcome(status: str, reason: str) -> dict[str, str]:
    """One stage's verdict, as the flow logs it and the report shows it."""
    return {"status": status, "reason": reason}


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.part-{secrets.token_hex(4)}")
    try:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return record


def _short(value) -> str:
    """A value as a reader wants it in one line: hashes cut to 12 characters."""
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return text


def _flat(record: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in record.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flat(value, dotted))
        else:
            out[dotted] = value
    return out


def diff_inputs(old: dict, new: dict) -> list[str]:
    """What changed between two input records, one phrase per dotted key, in key order.

    >>> diff_inputs({"preprocess": {"val_size": 5000}}, {"preprocess": {"val_size": 10000}})
    ['preprocess.val_size changed 5000 -> 10000']
    """
    a, b = _flat(old), _flat(new)
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
