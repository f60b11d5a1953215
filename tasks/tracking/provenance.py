"""What a parent run records about where it came from: the code (git commit, uncommitted changes),
the package versions, the machine and numerical settings it trained with, the Prefect flow run,
and which process logged it.

The machine is recorded as `env.*` tags, next to the `versions.*` ones, so `actlab reproduce` can
say what differs before it re-runs anything (`environment_diff`): the CPU (model, instruction-set
extensions, cores), the OS and C library, NumPy's BLAS, whether TensorFlow's oneDNN kernels are
in force, its thread settings, and the environment variables that steer XLA, oneDNN and threads.
These are what can change a float32 result's last bits while the code and data stay the same.
"""

import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]  # the repo, for the git commit
PACKAGES = ("tensorflow", "keras", "mlflow", "prefect", "numpy", "pandas", "pydantic")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# Environment variables that change which kernels run or how work is split: recorded set or not.
ENV_VARS = (
    "TF_ENABLE_ONEDNN_OPTS",
    "XLA_FLAGS",
    "TF_XLA_FLAGS",
    "TF_DETERMINISTIC_OPS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)
UNSET = "unset"
# /proc/cpuinfo flags that name instruction-set extensions (the rest are features such as
# "hypervisor" or "md_clear" that do not change what a kernel computes).
_ISA_PREFIXES = (
    "sse", "ssse3", "avx", "fma", "f16c", "bmi", "amx", "aes", "sha_ni", "vaes", "vpclmulqdq",
    "pclmulqdq", "gfni", "popcnt", "adx", "movbe", "abm", "xop", "asimd", "sve", "neon",
)  # fmt: skip


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo (Linux); {} elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def _cpu() -> dict[str, str]:
    info = _cpuinfo()
    flags = (info.get("flags") or info.get("Features") or "").split()  # x86 / arm64
    isa = sorted(f for f in flags if f.startswith(_ISA_PREFIXES))
    model = info.get("model name") or info.get("Model") or platform.processor()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "env.cpu.model": model or "unknown",
        "env.cpu.arch": platform.machine() or "unknown",
        "env.cpu.isa": " ".join(isa) if isa else "unknown",
        "env.cpu.count": str(os.cpu_count()),
        "env.cpu.usable": str(usable),  # fewer when the process is pinned (taskset, cgroups)
    }


def _blas() -> dict[str, str]:
    """NumPy's BLAS: the library loaded at run time (threadpoolctl, when installed, also says
    which kernels it picked for this CPU and its threads), else the one NumPy was built with."""
    import numpy

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for lib in threadpool_info():
            if lib.get("user_api") == "blas" and "numpy" in str(lib.get("filepath", "")):
                return {
                    "env.blas": f"{lib.get('internal_api')} {lib.get('version')}",
                    "env.blas.kernels": str(lib.get("architecture", "unknown")),
                    "env.blas.threads": str(lib.get("num_threads")),
                }
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {"env.blas": f"{blas.get('name')} {blas.get('version')}"}
    except (TypeError, KeyError, AttributeError):  # an older NumPy without mode="dicts"
        return {"env.blas": "unknown"}


def _tensorflow() -> dict[str, str]:
    """Whether TensorFlow's oneDNN kernels are in force, and its thread settings (0: its own
    choice). Imported here: wherever a parent run is recorded, TensorFlow is about to train."""
    import tensorflow as tf

    out = {}
    try:
        from tensorflow.python.util import _pywrap_util_port  # what TF itself consults

        out["env.onednn"] = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        out["env.onednn"] = "unknown"
    out["env.tf.intra_op_threads"] = str(tf.config.threading.get_intra_op_parallelism_threads())
    out["env.tf.inter_op_threads"] = str(tf.config.threading.get_inter_op_parallelism_threads())
    return out


def environment() -> dict[str, str]:
    """The machine and numerical settings as `env.*` tags (see the module docstring)."""
    system = platform.system()
    libc, libc_version = platform.libc_ver()
    tags = _cpu()
    tags["env.os"] = f"{system} {libc} {libc_version}".strip() if libc else system
    tags.update(_blas())
    tags.update(_tensorflow())
    tags.update({f"env.var.{name}": os.environ.get(name, UNSET) for name in ENV_VARS})
    return tags


def environment_diff(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """What differs between a recorded run's `versions.*` / `env.*` tags and this process's, one
    line each, e.g. "versions.tensorflow: recorded 2.21.0, now 2.22.0"."""
    lines = []
    if not any(k.startswith("env.") for k in recorded):
        lines.append("the recorded run has no env.* tags (made before the machine was recorded)")
        keys = sorted(k for k in {*recorded, *now} if k.startswith("versions."))
    else:
        keys = sorted(k for k in {*recorded, *now} if k.startswith(("versions.", "env.")))
    for key in keys:
        old, new = recorded.get(key), now.get(key)
        if old == new:
            continue
        if old is None or new is None:
            then = "not recorded" if old is None else f"recorded {old}"
            lines.append(f"{key}: {then}, {'now not known' if new is None else f'now {new}'}")
            continue
        if key == "env.cpu.isa":
            gone = sorted(set(old.split()) - set(new.split()))
            added = sorted(set(new.split()) - set(old.split()))
            parts = [f"recorded only {' '.join(gone)}"] if gone else []
            parts += [f"now only {' '.join(added)}"] if added else []
            lines.append(f"{key}: {'; '.join(parts)}")
        else:
            lines.append(f"{key}: recorded {old}, now {new}")
    return lines


def run_tags(flow_run_id: str | None) -> dict[str, str]:
    """versions.*, env.*, git.commit, git.dirty and the Prefect flow run (id, and URL if a UI
    exists)."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain")
    tags = {f"versions.{k}": v for k, v in _versions().items()}
    tags.update(environment())
    tags["git.commit"] = commit or "unknown"
    tags["git.dirty"] = "unknown" if dirty is None else str(bool(dirty)).lower()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if flow_run_id:
        tags["prefect.flow_run_id"] = flow_run_id
        url = flow_run_url(flow_run_id)
        if url:
            tags["prefect.flow_run_url"] = url
    return tags


def flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI; None on the ephemeral server, which has no UI."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def worker_tags() -> dict[str, str]:
    """Which process logs the run: with runner.kind dask, a worker's, not the flow's."""
    return {"worker.host": socket.gethostname(), "worker.pid": str(os.getpid())}
