"""Where files live, in one place. Everything hangs off two folders the config names.

data/raw/<source>/        downloads, immutable once verified
data/processed/<hash>.npz preprocessed splits, named by the hash of what made them
data/processed/<hash>.pixels  their images as bytes, read instead while the .npz is unchanged
data/weights/<parent>/<child>.npz  trained weights: scratch files of one flow run, removed when
                          it ends (the best network outlives it as an MLflow model, if logged)
reports/<parent run id>/  one comparison report per flow run; reports/latest points at the newest
"""

import os
from pathlib import Path

CACHE_OFF = ("off", "0", "false", "no")  # what turns a machine-wide cache off

IDX_FILES = {
    # role -> file name, as published with MNIST and Fashion-MNIST
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def raw_dir(data_dir: Path, source: str) -> Path:
    return Path(data_dir) / "raw" / source


def processed_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "processed"


def weights_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "weights"


def report_dir(reports_dir: Path, parent_run_id: str) -> Path:
    return Path(reports_dir) / parent_run_id


def run_weights_dir(data_dir: Path, parent_run_id: str) -> Path:
    """The weights of one flow run's networks: removed as a whole when that flow run ends."""
    return weights_dir(data_dir) / parent_run_id


# What to free when weights do not fit (tasks.training.models, tasks.tracking.runs).
WEIGHTS_SPACE_HINT = (
    "free space on that disk (weights left by killed runs under data/weights/ and old splits "
    "under data/processed/ can go: `make clean` removes both, and the runs and reports too), or "
    "set data.dir to a larger disk"
)


def weights_path(data_dir: Path, parent_run_id: str, run_id: str) -> Path:
    """The trained weights of the child MLflow run `run_id` of flow run `parent_run_id`."""
    return run_weights_dir(data_dir, parent_run_id) / f"{run_id}.npz"


def machine_cache(env: str, name: str) -> Path | None:
    """A machine-wide cache folder of this project: the folder `$<env>` names, None when it says
    off (off, 0, false, no), else `$XDG_CACHE_HOME/activation-lab/<name>` (`~/.cache/...`)."""
    value = os.environ.get(env, "").strip()
    if value.lower() in CACHE_OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "activation-lab" / name
