"""Why an activation lost or failed: one sentence per activation, from stated rules applied to the
per-layer diagnostics measured during training (tasks.training.diagnostics).

The rules, each with its threshold (the report's method section and docs/report.md state them
from the constants below):

- vanishing gradients: some hidden layer's weight gradient is below VANISHING_RATIO of the
  output layer's after the first epoch;
- exploding gradients: some hidden layer's is above EXPLODING_RATIO of it then;
- dead units: at least DEAD_SHARE of some hidden layer's units are dead after the last epoch;
- saturated units: at least SATURATED_SHARE of some hidden layer's units are saturated then;
- SELU's self-normalisation lost: for selu, some hidden layer's activation std lies outside
  SELU_STD_BAND after the last epoch (its fixed point is 1);
- at chance: the mean test accuracy is within CHANCE_MARGIN of 1 / classes;
- diverged: the first non-finite value measured (which tensor, which step);
- degenerate: the cost that contradicts the accuracy (tasks.training.loop.degenerate_reason).

Several seeds: each quantity is the median over the activation's seeds, layer by layer.
"""

import math
import statistics
from dataclasses import dataclass

import pandas as pd

from tasks.report.ranking import BEST, TIE, describe_model

VANISHING_RATIO = 1e-2
EXPLODING_RATIO = 1e2
DEAD_SHARE = 0.5
SATURATED_SHARE = 0.5
SELU_STD_BAND = (2 / 3, 1.5)
CHANCE_MARGIN = 0.05

# The diagnostics' own thresholds, as tasks.training.diagnostics applies them; repeated here (the
# report reads MLflow and does not load TensorFlow) and checked equal by a test.
SATURATION_LEVEL = 0.05
SATURATED_IMAGES = 0.9


@dataclass(frozen=True)
class Why:
    model: str
    activation: str
    sentence: str


def _layers(run: dict) -> int:
    """Hidden layers with diagnostics in `run` (0 when none were measured)."""
    found = [int(k[5:].split(".")[0]) for k in run.get("diagnostics") or {} if k[5:6].isdigit()]
    return max(found, default=0)


def _at(run: dict, layer: int, stat: str, epoch: int) -> float:
    series = (run.get("diagnostics") or {}).get(f"layer{layer}.{stat}") or []
    if not series or not -len(series) <= epoch < len(series):
        return math.nan
    value = series[epoch]
    return value if value is not None and math.isfinite(value) else math.nan


def profile(runs: list[dict], stat: str, epoch: int) -> list[float]:
    """Per hidden layer (index 0 = layer 1): the median over `runs` of `stat` after `epoch`
    (0 = the first epoch, -1 = the last each run logged); NaN where no run has a finite value."""
    depth = max((_layers(r) for r in runs), default=0)
    out = []
    for k in range(1, depth + 1):
        values = [v for v in (_at(r, k, stat, epoch) for r in runs) if not math.isnan(v)]
        out.append(statistics.median(values) if values else math.nan)
    return out


def _extreme(values: list[float], pick) -> tuple[int, float] | None:
    """(1-based layer, value) of the finite value `pick` (min or max) chooses, or None."""
    finite = [(k, v) for k, v in enumerate(values, start=1) if not math.isnan(v)]
    return pick(finite, key=lambda kv: kv[1]) if finite else None


def _fraction_of(value: float) -> str:
    """0.00156 -> '1/640' (two significant digits)."""
    inverse = 1.0 / value
    digits = max(int(math.floor(math.log10(inverse))) - 1, 0)
    return f"1/{round(inverse, -digits):,.0f}"


def _std(value: float) -> str:
    """1.254 -> '1.25'; 0.00123 -> '0.001' (a collapsed std stays visible)."""
    return f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"


def _percent(value: float) -> str:
    return f"{value:.0%}"


def findings(runs: list[dict], standardize: bool | None = None) -> list[str]:
    """The diagnostic rules that fire on an activation's runs, as phrases (empty: none fired)."""
    out = []
    ratios = profile(runs, "grad_norm_ratio", 0)
    low, high = _extreme(ratios, min), _extreme(ratios, max)
    if low and 0 < low[1] < VANISHING_RATIO:
        out.append(
            f"the gradient reaching layer {low[0]} is {_fraction_of(low[1])} of the output "
            "layer's after the first epoch (vanishing gradients)"
        )
    if high and high[1] > EXPLODING_RATIO:
        out.append(
            f"the gradient at layer {high[0]} is {high[1]:,.0f}× the output layer's after the "
            "first epoch (exploding gradients)"
        )
    dead = _extreme(profile(runs, "dead_fraction", -1), max)
    if dead and dead[1] >= DEAD_SHARE:
        out.append(
            f"{_percent(dead[1])} of layer {dead[0]}'s units are dead after the last epoch "
            "(no gradient on any probe image)"
        )
    saturated = _extreme(profile(runs, "saturated_fraction", -1), max)
    if saturated and saturated[1] >= SATURATED_SHARE:
        out.append(
            f"{_percent(saturated[1])} of layer {saturated[0]}'s units are saturated after the "
            "last epoch"
        )
    if runs and runs[0]["activation"] == "selu":
        stds = profile(runs, "act_std", -1)
        lo_std, hi_std = _extreme(stds, min), _extreme(stds, max)
        if lo_std and (lo_std[1] < SELU_STD_BAND[0] or hi_std[1] > SELU_STD_BAND[1]):
            inputs = {True: "standardised", False: "not standardised"}.get(standardize, "?")
            inits = ", ".join(sorted({r.get("init") or "?" for r in runs}))
            if lo_std[0] == hi_std[0]:
                spread = f"is {_std(lo_std[1])} at layer {lo_std[0]}"
            else:
                spread = (
                    f"runs from {_std(lo_std[1])} (layer {lo_std[0]}) to {_std(hi_std[1])} "
                    f"(layer {hi_std[0]})"
                )
            out.append(
                f"its activations' std {spread} after the last epoch, away from SELU's fixed "
                "point 1: self-normalisation needs LeCun init and standardised inputs "
                f"(here: {inits}, inputs {inputs})"
            )
    return out


def _no_rule(runs: list[dict]) -> str:
    """What was measured when no rule fired, so the reader sees how far from each threshold."""
    if not any(_layers(r) for r in runs):
        if runs and runs[0]["model"] == "tutorial":
            return "no per-layer diagnostics: the tutorial model has no hidden layer"
        return (
            "no per-layer diagnostics were recorded (train.diagnostics was off, or the run "
            "predates them)"
        )
    parts = []
    low = _extreme(profile(runs, "grad_norm_ratio", 0), min)
    if low:
        parts.append(f"smallest gradient ratio {low[1]:.2g} (layer {low[0]})")
    dead = _extreme(profile(runs, "dead_fraction", -1), max)
    saturated = _extreme(profile(runs, "saturated_fraction", -1), max)
    if dead and saturated:
        parts.append(
            f"at most {_percent(dead[1])} of a layer dead and {_percent(saturated[1])} saturated"
        )
    measured = f" ({', '.join(parts)})" if parts else ""
    return f"no diagnostic rule fired{measured}"


def _chance(row: pd.Series, runs: list[dict]) -> str | None:
    classes = max((len(r.get("class_accuracy") or []) for r in runs), default=0) or 10
    mean = row["mean"]
    if isinstance(mean, float) and math.isfinite(mean) and mean <= 1 / classes + CHANCE_MARGIN:
        return f"test accuracy stayed at chance ({mean:.3f}, {classes} classes)"
    return None


def _failures(runs: list[dict]) -> list[str]:
    """What ended the activation's unsound runs: the measured divergence, the degenerate cost."""
    out = []
    for r in sorted(runs, key=lambda r: r["seed"]):
        if r["status"] == "diverged":
            cause = r.get("nonfinite")
            where = f"seed {r['seed']} diverged"
            if cause:
                out.append(
                    f"{where}: the first non-finite value was {cause['tensor']} at step "
                    f"{cause['step']} of epoch {cause['epoch']} ({cause['detail']})"
                )
            else:
                out.append(f"{where}: {r.get('reason') or 'its cost stopped being finite'}")
        elif r["status"] == "degenerate":
            out.append(f"seed {r['seed']} is degenerate: {r.get('reason', '')}")
        elif r["status"] not in ("ok",):
            out.append(f"seed {r['seed']} {r['status']}: {r.get('reason', '')}")
    return out


def _standing(row: pd.Series, best: pd.Series | None) -> str:
    if row["status"] != "ok":
        return row["status"]
    mean = f"test accuracy {row['mean']:.3f}"
    if best is None:
        return mean
    return f"{mean} against {best['mean']:.3f} for `{best['activation']}`"


def explain(results: list[dict], summary: pd.DataFrame, context: dict) -> list[Why]:
    """One sentence per (model, activation) that lost or failed, in ranking order. The best of
    each model (rank 1, sound) gets none, and neither does an activation the ranking could not
    tell apart from the best (verdict `tie`): it did not lose."""
    out = []
    for model, rows in summary.groupby("model", sort=False):
        top = rows.iloc[0]
        best = top if top["status"] == "ok" else None
        for _, row in rows.iterrows():
            if best is not None and row["activation"] == best["activation"]:
                continue
            if row.get("verdict") in (BEST, TIE):
                continue
            runs = [
                r for r in results if r["model"] == model and r["activation"] == row["activation"]
            ]
            if not runs:
                continue
            hidden = runs[0].get("hidden_units") or context.get("hidden_units")
            same_shape = [r for r in runs if (r.get("hidden_units") or hidden) == hidden]
            phrases = _failures(runs) + findings(same_shape, context.get("standardize"))
            if not phrases:
                phrases.append(_no_rule(same_shape))
            chance = _chance(row, runs)
            body = "; ".join(phrases) + (f", and {chance}" if chance else "")
            where = describe_model(model, hidden if model == "mlp" else None)
            head = f"`{row['activation']}` ({model}, {where}; {_standing(row, best)})"
            out.append(Why(model, row["activation"], f"{head}: {body}."))
    return out


def rules_text() -> str:
    """The method: how the diagnostics are measured and the rules that turn them into a why."""
    low, high = SELU_STD_BAND
    return (
        "## Inside the networks: what was measured, and the rules\n\n"
        "After every epoch each `mlp` network is probed on the same validation images (the first "
        "`train.probe_size`, 1,000 by default). Per hidden layer: the mean and standard "
        "deviation of its pre-activations (x·W + b) and of its activations; the share of "
        "**dead** units (the activation's derivative is exactly 0 on every probe image, so no "
        "gradient reaches their weights); the share of **saturated** units (not dead, with a "
        f"derivative below {SATURATION_LEVEL:.0%} of the activation's largest on at least "
        f"{SATURATED_IMAGES:.0%} of the probe images); the norm of the gradient of the probe's "
        "cost with respect to the layer's weights, and its ratio to the output layer's. The "
        "probe only reads the weights: training is the same with it or without it. MLflow "
        "holds every value per epoch (`layer1.dead_fraction`, `layer1.grad_norm_ratio`, ...).\n\n"
        "Each activation that lost or failed gets one sentence from these rules (several seeds: "
        "the median over seeds, layer by layer):\n\n"
        f"- **vanishing gradients**: a hidden layer's gradient is below {VANISHING_RATIO:g} "
        "(1/100) of the output layer's after the first epoch;\n"
        f"- **exploding gradients**: a hidden layer's gradient is above {EXPLODING_RATIO:g}× "
        "the output layer's after the first epoch;\n"
        f"- **dead units**: at least {DEAD_SHARE:.0%} of a hidden layer's units are dead after "
        "the last epoch;\n"
        f"- **saturated units**: at least {SATURATED_SHARE:.0%} of a hidden layer's units are "
        "saturated after the last epoch;\n"
        "- **SELU's self-normalisation lost** (selu only): a hidden layer's activation std lies "
        f"outside {low:.2g}–{high:.2g} after the last epoch (SELU's fixed point is 1, held with "
        "LeCun initialisation and standardised inputs);\n"
        f"- **at chance**: mean test accuracy within {CHANCE_MARGIN:g} of 1 / classes;\n"
        "- **diverged**: the first non-finite value, found by replaying the diverged epoch step "
        "by step (which tensor, which step);\n"
        "- **degenerate**: the cost that contradicts the accuracy.\n\n"
        "When no rule fires the sentence says so, with the measured values: the gap is then "
        "not explained by these measurements."
    )
