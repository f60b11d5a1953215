"""Files written whole or not at all, and their sha256.

Every write of something another run or reader may pick up (downloads, preprocessed splits,
manifests, weights) goes to a temporary sibling first and is renamed into place, so an interrupted
or failed write never leaves a partial file under the real name.
"""

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 1 << 20  # bytes per read when hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest` to write to; renamed to `dest` if the block succeeds, removed
    whatever happens. Open it with mode "xb"/"x" (a fresh file) or pass it to a writer."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part-{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(dest: Path, text: str) -> None:
    """`dest` holds `text` (UTF-8), or keeps what it held if the write fails."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
