"""Re-run a past experiment, or one network of it, from what MLflow recorded, and say how close
the re-run came.

`actlab reproduce RUN_ID` goes through three steps, each a function here; the CLI only wires them
around the flow:
- `plan_reproduction`: find the parent run, read its `config.json` (or rebuild the config from its
  typed params), choose what to re-run (a child run id: that network alone; a parent run id: its
  whole grid, or the cells `--cells` names), point tracking at the same store and experiment, and
  list what differs from the recorded run before anything trains: the code (git commit,
  uncommitted changes) and the environment (`tasks.tracking.provenance.environment_diff`);
- the flow runs that config, restricted to the chosen cells, as a new parent run;
- `check_reproduction`: tag the new run `reproduced_from=<id>`, match each re-run network with its
  original by cell (`tasks.core.cells`: every swept axis, not only model, activation and seed),
  and compare per-epoch costs and test accuracies. The verdict is one of three:
  `identical` (bit for bit), `equivalent` (every cost within a relative tolerance and every test
  accuracy a tie as the report counts one) or `different` (the first epoch and network that
  differ, by how much, and the recorded differences that may explain it).
"""

import json
import math
from dataclasses import dataclass, field

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.core.cells import CellKey, cell_key, cell_label, match_keys, varying_axes
from tasks.core.config import Config, ConfigError, validate_config
from tasks.report.stats import TIE
from tasks.tracking.provenance import environment_diff, run_tags
from tasks.tracking.records import PARENT_TAG, child_runs, metric_history, recorded_config

REPRODUCED_TAG = "reproduced_from"
VERDICT_TAG = "reproduction.verdict"
# Relative difference allowed per epoch cost for `equivalent`: float32 costs carry about 7
# significant digits, and another BLAS, oneDNN or XLA build sums a batch in another order; those
# last-bit changes compound over the epochs but stay far below 1e-3, while a changed
# hyperparameter or data moves the first epoch's cost by percent.
TOLERANCE = 1e-3
VERDICTS = ("identical", "equivalent", "different")
# Exit codes of `actlab reproduce`; 2 means it could not reproduce at all (unknown run, bad
# --cells, data not available).
EXIT_CODES = {"identical": 0, "different": 1, "equivalent": 3}


class ReproduceError(RuntimeError):
    """The run cannot be reproduced (unknown id, no recorded config). The message says why."""


@dataclass(frozen=True)
class Plan:
    """What to re-run and against what to check it."""

    requested_id: str
    parent: Run
    config: Config
    config_source: str  # "config.json" or "params"
    originals: list[Run]  # the child runs to compare with
    cells: list[str] | None  # the grid cells (child run names) to train; None: the whole grid
    warnings: list[str] = field(default_factory=list)  # code: commit, uncommitted changes
    environment: list[str] = field(default_factory=list)  # versions.* / env.* that differ

    @property
    def scope(self) -> str:
        """'child run <id> (mlp/relu/seed=0) of parent run <id>: 1 of 19 networks'."""
        parent = self.parent.info.run_id
        n, total = len(self.originals), len(self.config.grid)
        of = f"{n} of {total} networks" if self.cells is not None else _networks(n)
        if self.requested_id != parent:
            label = _labels(self.originals)[self.originals[0].info.run_id]
            return f"child run {self.requested_id} ({label}) of parent run {parent}: {of}"
        return f"parent run {parent}: {of}"


@dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    message: str  # one line: the verdict and why
    details: list[str] = field(default_factory=list)  # further lines for `different`
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def reproduced(self) -> bool:
        return self.verdict != "different"


def _networks(n: int) -> str:
    return f"{n} network" + ("" if n == 1 else "s")


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


def _key(run: Run) -> CellKey:
    return cell_key(run.data.params, run.data.tags)


def _labels(children: list[Run]) -> dict[str, str]:
    """run id -> cell label, showing the axes that vary among `children`."""
    axes = varying_axes([_key(c) for c in children])
    return {
        # a run without the identifying params or tags (not made by the flow): its name
        c.info.run_id: cell_label(_key(c), axes) if _key(c)[0] else c.info.run_name
        for c in children
    }


def _select(children: list[Run], wanted: list[str], parent_id: str) -> list[Run]:
    """The children `wanted` names: each by run id, run name or cell label, exactly one each."""
    labels = _labels(children)
    chosen: list[Run] = []
    for item in wanted:
        found = [
            c for c in children if item in (c.info.run_id, c.info.run_name, labels[c.info.run_id])
        ]
        if not found:
            listed = ", ".join(sorted(labels.values()))
            raise ReproduceError(
                f"--cells {item!r}: no child run of parent run {parent_id} has that id, name or "
                f"label; its cells are: {listed}"
            )
        if len(found) > 1:
            listed = "; ".join(f"{labels[c.info.run_id]} ({c.info.run_id})" for c in found)
            raise ReproduceError(
                f"--cells {item!r} names {len(found)} runs ({listed}): give a run id or a label"
            )
        if found[0].info.run_id not in {c.info.run_id for c in chosen}:
            chosen.append(found[0])
    return chosen


def plan_reproduction(run_id: str, tracking_uri: str, cells: list[str] | None = None) -> Plan:
    """What to re-run for `run_id` (a child: that network; a parent: its grid, or `cells` of it),
    the config it ran with, and what differs in code and environment from the recorded run."""
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    run = _get_run(mlflow, run_id, tracking_uri)
    parent_id = run.data.tags.get(PARENT_TAG)
    if parent_id and cells:
        raise ReproduceError(
            f"run {run_id} is a child run: it is reproduced alone; --cells chooses among the "
            f"runs of a parent, e.g. its parent {parent_id}"
        )
    parent = _get_run(mlflow, parent_id, tracking_uri) if parent_id else run
    record, source = _recorded_config(mlflow, parent)
    # Log into the original's store and experiment (the recorded URI has its password redacted).
    experiment = mlflow.get_experiment(parent.info.experiment_id)
    record = {**record, "tracking": {"uri": tracking_uri, "experiment": experiment.name}}
    try:
        config = validate_config(record, f"the config recorded by run {parent.info.run_id}")
    except ConfigError as exc:
        raise ReproduceError(str(exc)) from None
    children = child_runs(mlflow, parent)
    if parent_id:
        originals = [run]
    elif cells:
        originals = _select(children, cells, parent.info.run_id)
    else:
        originals = children
    if not originals:
        raise ReproduceError(f"run {parent.info.run_id} has no child runs: nothing to compare")
    # A child, a chosen few, or a run that was itself part of a grid: train those cells only.
    subset = parent_id or cells or "grid.full_size" in parent.data.tags
    names = [c.info.run_name for c in originals] if subset else None
    grid = {cell.name for cell in config.grid}
    strays = [n for n in names or [] if n not in grid]
    if strays:
        raise ReproduceError(
            f"runs named {', '.join(map(repr, strays))} are not cells of the grid that parent run "
            f"{parent.info.run_id} recorded; reproduce the parent run instead"
        )
    now = run_tags(None)
    return Plan(
        requested_id=run_id,
        parent=parent,
        config=config,
        config_source=source,
        originals=originals,
        cells=names,
        warnings=provenance_warnings(parent.data.tags, now),
        environment=environment_diff(parent.data.tags, now),
    )


def provenance_warnings(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """Where the code differs from the recorded run's: another commit, uncommitted changes."""
    warnings = []
    old, new = recorded.get("git.commit", "unknown"), now.get("git.commit", "unknown")
    if old != new:
        warnings.append(f"code commit differs: the run was made at {old}, this is {new}")
    if now.get("git.dirty") == "true":
        warnings.append("the working tree has uncommitted changes")
    return warnings


def child_results(mlflow: MlflowClient, children: list[Run]) -> dict[CellKey, dict]:
    """cell key -> {"cost": per-epoch costs in step order, "test_accuracy", "label", "params"}."""
    labels = _labels(children)
    return {
        _key(child): {
            "cost": metric_history(mlflow, child.info.run_id, "cost"),
            "test_accuracy": child.data.metrics.get("test_accuracy"),
            "label": labels[child.info.run_id],
            "params": dict(child.data.params),
        }
        for child in children
    }


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _same_bits(a: float | None, b: float | None) -> bool:
    """Equal values, or both missing or NaN (diverged alike)."""
    return (_missing(a) and _missing(b)) or a == b


def _relative(a: float | None, b: float | None) -> float:
    """|a - b| relative to the larger magnitude; 0 for the same value, inf when only one is
    missing, NaN or infinite."""
    if _same_bits(a, b):
        return 0.0
    if _missing(a) or _missing(b) or math.isinf(a) or math.isinf(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def _tie(a: float | None, b: float | None) -> bool:
    """Test accuracies the report's own comparison counts as equal (`tasks.report.stats.TIE`):
    the same number of test images right, float noise aside."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return abs(a - b) <= TIE


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def param_differences(original: dict[CellKey, dict], again: dict[CellKey, dict]) -> list[str]:
    """Hyperparameters a re-run network was trained with that differ from its original's, e.g.
    after the recorded config.json was edited: "mlp/relu/seed=0: learning_rate 0.1 -> 0.05"."""
    lines = []
    for key, twin in match_keys(list(original), list(again)).items():
        if twin is None:
            continue
        old, new = original[key]["params"], again[twin]["params"]
        for name in sorted(old.keys() | new.keys()):
            if old.get(name) != new.get(name):
                lines.append(
                    f"{original[key]['label']}: {name} {old.get(name, 'not logged')} -> "
                    f"{new.get(name, 'not logged')}"
                )
    return lines


def _cost_text(a: float | None, b: float | None) -> str:
    rel = _relative(a, b)
    how = f"relative difference {rel:.2g}" if math.isfinite(rel) else "one is not finite"
    return f"cost {a:.9g} -> {b:.9g} ({how})"


def compare_results(
    original: dict[CellKey, dict], again: dict[CellKey, dict], tolerance: float = TOLERANCE
) -> Verdict:
    """Every original network against its re-run, matched by cell (`match_keys`): the three
    verdicts."""
    if not original:
        return Verdict("different", "different: the original run has no child runs to compare")
    matched = match_keys(list(original), list(again))
    bitwise = True
    largest = (0.0, "", 0)  # (relative difference, network, epoch) within the tolerance
    first: dict[int, list[tuple[float, str]]] = {}  # epoch -> [(relative, "network: what")]
    accuracy: list[str] = []
    missing: list[str] = []
    for key in sorted(original, key=lambda k: original[k]["label"]):
        name = original[key]["label"]
        twin = matched[key]
        if twin is None:
            missing.append(f"{name}: not re-run")
            continue
        old, new = original[key]["cost"], again[twin]["cost"]
        for epoch in range(max(len(old), len(new))):
            if epoch >= len(old) or epoch >= len(new):
                rel, what = math.inf, f"{len(old)} epochs recorded, {len(new)} now"
            else:
                rel, what = _relative(old[epoch], new[epoch]), _cost_text(old[epoch], new[epoch])
            bitwise = bitwise and rel == 0.0
            if rel > tolerance:
                first.setdefault(epoch, []).append((rel, f"{name}: {what}"))
                break
            if rel > largest[0]:
                largest = (rel, name, epoch)
        acc_old, acc_new = original[key]["test_accuracy"], again[twin]["test_accuracy"]
        bitwise = bitwise and _same_bits(acc_old, acc_new)
        if not _tie(acc_old, acc_new):
            accuracy.append(f"{name}: test accuracy {_number(acc_old)} -> {_number(acc_new)}")
    extra = [again[k]["label"] for k in again if k not in matched.values()]
    notes = [f"{name}: trained, but not in the original selection" for name in sorted(extra)]
    n = _networks(len(original))
    if first or accuracy or missing:
        details: list[str] = []
        if first:
            epoch = min(first)
            at = sorted(first.pop(epoch), key=lambda x: (-x[0], x[1]))  # largest first
            message = f"different at epoch {epoch}: {at[0][1]}; tolerance {tolerance:g}"
            details += [f"also at epoch {epoch}: {what}" for _, what in at[1:]]
            details += [f"from epoch {e}: {what}" for e in sorted(first) for _, what in first[e]]
            details += accuracy
        elif accuracy:
            message = f"different in test accuracy: {accuracy[0]} (costs within {tolerance:g})"
            details += accuracy[1:]
        else:
            message = f"different: {missing[0]}"
            missing = missing[1:]
        return Verdict("different", message, details + missing + notes)
    if bitwise:
        message = f"identical: {n}, every per-epoch cost and test accuracy bit for bit"
        return Verdict("identical", message, notes)
    rel, name, epoch = largest
    where = f"largest {rel:.2g}: {name}, epoch {epoch}" if rel else "costs bit for bit"
    return Verdict(
        "equivalent",
        f"equivalent: {n}, every per-epoch cost within relative {tolerance:g} ({where}), "
        "test accuracies tied",
        notes,
    )


def check_reproduction(plan: Plan, new_parent_id: str, tolerance: float = TOLERANCE) -> Verdict:
    """Tag the new parent run, compare it with the original, and give the verdict; a `different`
    one lists what differs in data, code and environment from the recorded run."""
    mlflow = MlflowClient(tracking_uri=plan.config.tracking.uri)
    original = plan.parent
    mlflow.set_tag(new_parent_id, REPRODUCED_TAG, plan.requested_id)
    new = mlflow.get_run(new_parent_id)
    warnings = []
    old_digest = original.data.tags.get("dataset.sha256")
    new_digest = new.data.tags.get("dataset.sha256")
    if old_digest != new_digest:
        warnings.append(f"data digest differs: the run used {old_digest}, this run {new_digest}")
    original_results = child_results(mlflow, plan.originals)
    new_results = child_results(mlflow, child_runs(mlflow, new))
    verdict = compare_results(original_results, new_results, tolerance)
    details = list(verdict.details)
    if verdict.verdict == "different":
        params = param_differences(original_results, new_results)
        causes = params + warnings + plan.warnings + plan.environment
        if causes:
            details += ["recorded differences that may explain it:"]
            details += [f"  {c}" for c in causes]
        else:
            details += ["no recorded difference in code, data or environment explains it"]
    for key, value in (
        (VERDICT_TAG, verdict.verdict),
        ("reproduction.tolerance", f"{tolerance:g}"),
        ("reproduced", str(verdict.reproduced).lower()),
    ):
        mlflow.set_tag(new_parent_id, key, value)
    return Verdict(verdict.verdict, verdict.message, details, warnings)
