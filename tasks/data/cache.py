"""Cross-run caching that explains itself: a small JSON manifest beside each cached artifact.

A manifest records what made the artifact (its inputs: source, file hashes, settings, code version)
and what came out (the content hash of the output). The next run compares its own inputs with the
manifest and says, per stage, `cached` or `ran` and why, e.g.
"preprocess ran: preprocess.val_size changed 5000 -> 10000" or
"download cached: all 4 files present and verified". A cached file whose content no longer matches
its manifest is rebuilt, and the reason says so.
"""

import json
import time
from pathlib import Path

from tasks.core.dotted import flatten
from tasks.core.files import write_text_atomic

MANIFEST_VERSION = 1  # layout of the manifest file itself


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
