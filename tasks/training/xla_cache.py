"""XLA's compiled programs kept on disk across runs (TensorFlow's persistent compilation cache).

Each network shape's epoch is one XLA program, compiled the first time a process trains that
shape: 0.2-0.4 s per (model, activation) on a 2-core machine, paid again by every run. With the
cache, a later run loads the compiled program instead (docs/caching.md has the measurements).

The cache is TensorFlow's own (`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=...`), so it
must be set before TensorFlow reads its flags: `tasks.training` calls `enable()` on import, before
any module of it imports TensorFlow. A compiled program is machine code for the CPU that compiled
it, and TensorFlow does not key its entries by CPU, so the folder is one per CPU model, feature
set and TensorFlow version: a cache on a shared disk never hands one machine another's code.

`ACTLAB_XLA_CACHE`: unset = `$XDG_CACHE_HOME/activation-lab/xla` (`~/.cache/...`), a folder = that
folder, `off` = no persistent cache (every process compiles). A `TF_XLA_FLAGS` that already names
a cache folder is left as it is.
"""

import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path

from tasks.core.paths import machine_cache

ENV = "ACTLAB_XLA_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"


def _cpu_fingerprint() -> str:
    """The CPU model, its feature flags, the machine type and TensorFlow's version, hashed."""
    parts = [platform.machine()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    parts.append(line.strip())
                if line.strip() == "":  # the first processor's block is enough
                    break
    except OSError:
        parts.append(platform.processor())
    try:
        parts.append(importlib.metadata.version("tensorflow"))
    except importlib.metadata.PackageNotFoundError:
        parts.append("tensorflow ?")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_root() -> Path | None:
    """The folder the per-CPU cache folders live in, or None when the cache is off."""
    return machine_cache(ENV, "xla")


def enable() -> Path | None:
    """Point TensorFlow's persistent XLA cache at this machine's folder (made if missing);
    return the folder, or None when it is off, already configured, or cannot be made."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    root = cache_root()
    if root is None or FLAG in flags:
        return None
    folder = root / _cpu_fingerprint()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: compile as before rather than fail a run
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()
    return folder
