"""Re-run a past experiment from what MLflow recorded, and check it came out the same.

`actlab reproduce RUN_ID` (a parent or a child run id) goes through three steps, each a function
here; the CLI only wires them around the flow:
- `plan_reproduction`: find the parent run, read its `config.json` (or rebuild the config from its
  typed params), point tracking at the same store and experiment, and list what differs from the
  recorded provenance (git commit, uncommitted changes);
- the flow runs that config as a new parent run;
- `check_reproduction`: tag the new run `reproduced_from=<id>`, warn if the data digest differs,
  and compare each child's per-epoch `cost` and its test accuracy with the original's, matched by
  (model, activation, seed). Training is deterministic per seed on one machine, so any difference
  beyond float noise means the code, the data or the environment changed.
"""

import json
import math
from dataclasses import dataclass, field

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.core.config import Config, ConfigError, validate_config
from tasks.tracking.provenance import run_tags
from tasks.tracking.records import PARENT_TAG, child_runs, recorded_config

REPRODUCED_TAG = "reproduced_from"
TOLERANCE = 1e-6  # |Δ| allowed per epoch cost and test accuracy: float noise, not a change


class ReproduceError(RuntimeError):
    """The run cannot be reproduced (unknown id, no recorded config). The message says why."""


@dataclass(frozen=True)
class Plan:
    """What to re-run and against what to check it."""

    requested_id: str
    parent: Run
    config: Config
    config_source: str  # "config.json" or "params"
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    reproduced: bool
    message: str  # "reproduced (max |Δcost| = …)" or "diverged at epoch k (…)"
    warnings: list[str] = field(default_factory=list)


def _get_run(mlflow: MlflowClient, run_id: str, uri: str) -> Run:
    try:
        return mlflow.get_run(run_id)
    except MlflowException:
        raise ReproduceError(f"run {run_id!r} not found in the tracking store {uri}") from None


def _parse_param(text: str):
    """A typed param as logged by tasks.tracking.runs.config_params: JSON lists and numbers, else
    str(value)."""
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


def config_from_params(params: dict[str, str]) -> dict:
    """The nested config record rebuilt from the parent's flat `section.key` params."""
    record: dict = {}
    for key, text in params.items():
        node = record
        *sections, last = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = _parse_param(text)
    return record


def _recorded_config(mlflow: MlflowClient, parent: Run) -> tuple[dict, str]:
    run_id = parent.info.run_id
    record = recorded_config(mlflow, parent)
    if record:
        return record, "config.json"
    if not parent.data.params:
        raise ReproduceError(f"run {run_id} has neither a config.json artifact nor params")
    return config_from_params(parent.data.params), "params"


def plan_reproduction(run_id: str, tracking_uri: str) -> Plan:
    """The parent of `run_id` (or itself), the config it ran with, and provenance warnings."""
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    run = _get_run(mlflow, run_id, tracking_uri)
    parent_id = run.data.tags.get(PARENT_TAG)
    parent = _get_run(mlflow, parent_id, tracking_uri) if parent_id else run
    record, source = _recorded_config(mlflow, parent)
    # Log into the original's store and experiment (the recorded URI has its password redacted).
    experiment = mlflow.get_experiment(parent.info.experiment_id)
    record = {**record, "tracking": {"uri": tracking_uri, "experiment": experiment.name}}
    try:
        config = validate_config(record, f"the config recorded by run {parent.info.run_id}")
    except ConfigError as exc:
        raise ReproduceError(str(exc)) from None
    warnings = provenance_warnings(parent.data.tags, run_tags(None))
    return Plan(run_id, parent, config, source, warnings)


def provenance_warnings(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """Where the code differs from the recorded run's: another commit, uncommitted changes."""
    warnings = []
    old, new = recorded.get("git.commit", "unknown"), now.get("git.commit", "unknown")
    if old != new:
        warnings.append(f"code commit differs: the run was made at {old}, this is {new}")
    if now.get("git.dirty") == "true":
        warnings.append("the working tree has uncommitted changes")
    return warnings


def _cell(run: Run) -> tuple[str, str, str]:
    tags = run.data.tags
    return tags.get("model", "?"), tags.get("activation", "?"), tags.get("seed", "?")


def child_results(mlflow: MlflowClient, parent: Run) -> dict[tuple[str, str, str], dict]:
    """(model, activation, seed) -> {"cost": per-epoch costs in step order, "test_accuracy"}."""
    out = {}
    for child in child_runs(mlflow, parent):
        history = sorted(mlflow.get_metric_history(child.info.run_id, "cost"), key=lambda m: m.step)
        out[_cell(child)] = {
            "cost": [m.value for m in history],
            "test_accuracy": child.data.metrics.get("test_accuracy"),
        }
    return out


def _delta(a: float | None, b: float | None) -> float:
    """|a - b|, with two NaNs (or two missing values) counting as equal: both diverged alike."""
    if a is None or b is None:
        return 0.0 if a is b else math.inf
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b)


def compare_results(original: dict, again: dict, tolerance: float = TOLERANCE) -> Verdict:
    """Every original child against its re-run: first epoch whose cost differs, else accuracy."""
    max_delta = 0.0
    first_epoch: int | None = None
    details: list[str] = []
    accuracy: list[str] = []
    for cell in sorted(original):
        name = "/".join(cell[:2]) + f"/seed={cell[2]}"
        if cell not in again:
            details.append(f"{name}: not re-run")
            first_epoch = 0 if first_epoch is None else first_epoch
            continue
        old, new = original[cell]["cost"], again[cell]["cost"]
        for epoch in range(max(len(old), len(new))):
            if epoch >= len(old) or epoch >= len(new):
                d = math.inf
                what = f"{len(old)} epochs recorded, {len(new)} now"
            else:
                d = _delta(old[epoch], new[epoch])
                what = f"cost {old[epoch]:.6g} -> {new[epoch]:.6g}"
            if d > tolerance:
                if first_epoch is None or epoch < first_epoch:
                    first_epoch, details = epoch, []
                if epoch == first_epoch:
                    details.append(f"{name}: {what}")
                break
            max_delta = max(max_delta, d)
        acc_old, acc_new = original[cell]["test_accuracy"], again[cell]["test_accuracy"]
        if _delta(acc_old, acc_new) > tolerance:
            accuracy.append(f"{name}: test accuracy {acc_old} -> {acc_new}")
    if first_epoch is not None:
        return Verdict(False, f"diverged at epoch {first_epoch} ({'; '.join(details)})")
    if accuracy:
        return Verdict(False, f"diverged in test accuracy ({'; '.join(accuracy)})")
    if not original:
        return Verdict(False, "nothing to compare: the original run has no child runs")
    n = len(original)
    networks = f"{n} network" + ("s" if n != 1 else "")
    return Verdict(True, f"reproduced (max |Δcost| = {max_delta:.3g}, {networks})")


def check_reproduction(plan: Plan, new_parent_id: str, tolerance: float = TOLERANCE) -> Verdict:
    """Tag the new parent run, compare it with the original, and say whether it reproduced."""
    mlflow = MlflowClient(tracking_uri=plan.config.tracking.uri)
    original = plan.parent
    mlflow.set_tag(new_parent_id, REPRODUCED_TAG, plan.requested_id)
    new = mlflow.get_run(new_parent_id)
    warnings = []
    old_digest = original.data.tags.get("dataset.sha256")
    new_digest = new.data.tags.get("dataset.sha256")
    if old_digest != new_digest:
        warnings.append(f"data digest differs: the run used {old_digest}, this run {new_digest}")
    verdict = compare_results(
        child_results(mlflow, original), child_results(mlflow, new), tolerance
    )
    mlflow.set_tag(new_parent_id, "reproduced", str(verdict.reproduced).lower())
    return Verdict(verdict.reproduced, verdict.message, warnings)
