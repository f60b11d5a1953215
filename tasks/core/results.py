"""What one task hands the next: small, typed and frozen. Large arrays stay in files; these carry
their paths and what a later stage or the report needs to know."""

import math
from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.config import Cell

CACHED, RAN = "cached", "ran"  # a cached stage's two outcomes


@dataclass(frozen=True)
class StageOutcome:
    """One cached stage's verdict, as the flow logs it and the report shows it."""

    status: str  # CACHED or RAN
    reason: str  # why, e.g. "preprocess.val_size changed 5000 -> 10000"


@dataclass(frozen=True)
class RawDataset:
    """The four IDX files of a dataset (none for a generated one) and their content digest."""

    source: str  # data.source as configured: a dataset name or a folder
    name: str  # what the report calls it, e.g. "fashion-mnist"
    digest: str  # sha256 over the decompressed content (or the generator's recipe)
    stage: StageOutcome
    files: dict[str, str] = field(default_factory=dict)  # role (IDX_FILES key) -> path


@dataclass(frozen=True)
class SplitDigest:
    """One split of the .npz as MLflow's dataset input records it, known without reading it."""

    sha256: str  # over x then y: each one's dtype, shape and every byte
    x_dtype: str  # numpy's dtype string, e.g. "<f4"
    x_shape: tuple[int, ...]  # e.g. (55000, 784)
    y_dtype: str
    y_shape: tuple[int, ...]


@dataclass(frozen=True)
class PreparedData:
    """The preprocessed splits: data/processed/<hash>.npz."""

    path: str
    stage: StageOutcome
    # "train", "val", "test" -> its digest, dtypes and shapes (from the manifest when cached)
    splits: dict[str, SplitDigest] = field(default_factory=dict)


@dataclass(frozen=True)
class NonFinite:
    """Where a diverged run first held a NaN or an infinity (tasks.training.diagnostics)."""

    # e.g. "log(output) in the cost", "layer2.preact (x·W + b)", "output.W gradient"
    tensor: str
    epoch: int  # 0-based, as diverged_epoch
    step: int  # 0-based step within that epoch
    global_step: int  # 0-based step since training began
    detail: str  # e.g. "-inf in 100 of 1,000 values: an output was exactly 0, and log(0) = -inf"

    def sentence(self) -> str:
        return (
            f"first non-finite value: {self.tensor} at step {self.step} of epoch {self.epoch} "
            f"(global step {self.global_step}): {self.detail}"
        )


@dataclass(frozen=True)
class TrainedNetwork:
    """One grid cell after training: its child MLflow run, outcome, costs and weights file."""

    cell: Cell
    run_id: str
    init: str  # the initialiser used for its activation layers (after resolving `auto`)
    status: str  # ok | diverged | degenerate (tasks.core.names.STATUSES)
    reason: str  # why the status is not ok, else ""
    diverged_epoch: int | None
    costs: tuple[float, ...]  # per epoch, as logged
    seconds_per_epoch: float
    weights_path: str
    nonfinite: NonFinite | None = None  # a diverged run: where it first stopped being finite
    val_accuracy: float = math.nan  # after the last epoch run

    @property
    def epochs_run(self) -> int:
        return len(self.costs)

    @property
    def final_cost(self) -> float:
        return self.costs[-1] if self.costs else math.nan


@dataclass(frozen=True)
class EvaluatedNetwork:
    """A trained network scored on the test split (NaN when it was not scored: it diverged)."""

    trained: TrainedNetwork
    test_loss: float
    test_accuracy: float


@dataclass(frozen=True)
class Report:
    """A written report: its folder and the answer it opens with.

    It stands for its folder wherever a path is expected (`Path(report)`, `f"{report}/..."`), so
    code that only needs the folder reads it as one.
    """

    folder: Path  # reports/<parent run id>
    answer: tuple[str, ...]  # the report's headline sentences, one per model (Markdown)
    # (child run id, file name in `folder`): the best run's confusion-matrix figure per (model,
    # depth), the one per-run figure a person looks at; published on that child run too
    best_figures: tuple[tuple[str, str], ...] = ()

    def __fspath__(self) -> str:
        return str(self.folder)

    def __str__(self) -> str:
        return str(self.folder)
