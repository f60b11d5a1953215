"""From the per-run results table to the answer: one row per (model, activation), ranked, with
statistics over seeds and the paired comparison with the baseline, and the one sentence per model
that heads the report.

Ranking within a model: activations whose every seed trained soundly (`ok`) first, by mean test
accuracy; then those with a degenerate run, then those with a diverged run, then runs that failed
or never finished. Only a fully sound activation can be named best. Each unsound row says why.

This is the project's one definition of "best" (`best_activations`, `best_run`, `best_overall`):
the report, `actlab runs` and the logged MLflow model all use it.
"""

import math

import pandas as pd

from tasks.core.names import DEFAULT_BASELINE, status_rank
from tasks.report.stats import ALPHA, CONFIDENCE, PAIRED_TEST, paired_test, summarize

SUMMARY_COLUMNS = [
    "model",
    "rank",
    "activation",
    "status",
    "seeds",
    "sound",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "vs_baseline",
    "p_value",
    "test",
    "note",
    "reason",
]


def _seeds(seeds) -> str:
    seeds = sorted(int(s) for s in seeds)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _by_seed(rows: pd.DataFrame) -> dict[int, float]:
    sound = rows[(rows["status"] == "ok") & rows["test_accuracy"].notna()]
    return dict(zip(sound["seed"].astype(int), sound["test_accuracy"].astype(float), strict=True))


def summarize_activations(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One ranked row per (model, activation) of a `results_table`; see the module docstring.

    mean/std/ci_*: test accuracy over the sound (`ok`) seeds, the interval clipped to [0, 1].
    vs_baseline and p_value: the paired t-test against `baseline` of the same model, on the seeds
    both trained soundly; `note` says why a p-value is missing.
    """
    rows = []
    for (model, activation), group in table.groupby(["model", "activation"], sort=False):
        status = max(group["status"], key=status_rank)  # the most severe of its runs
        reason = ""
        if status != "ok":
            bad = group[group["status"] != "ok"]
            first = next((r for r in bad["reason"] if r), "")
            worst = bad[bad["status"] == status]
            reason = f"{status} on {_seeds(worst['seed'])} of {len(group)}"
            reason += f": {first}" if first else ""
        values = _by_seed(group)
        s = summarize(list(values.values()))
        row = {
            "model": model,
            "activation": activation,
            "status": status,
            "seeds": len(group),
            "sound": s.n,
            "mean": s.mean,
            "std": s.std,
            # an accuracy lies in [0, 1]; so does what can be said about its mean
            "ci_low": max(s.ci_low, 0.0) if math.isfinite(s.ci_low) else s.ci_low,
            "ci_high": min(s.ci_high, 1.0) if math.isfinite(s.ci_high) else s.ci_high,
            "vs_baseline": math.nan,
            "p_value": math.nan,
            "test": "",
            "note": "",
            "reason": reason,
        }
        base = table[(table["model"] == model) & (table["activation"] == baseline)]
        if activation == baseline:
            row["note"] = "the baseline"
        elif base.empty:
            row["note"] = f"no `{baseline}` baseline for {model}"
        elif not _by_seed(base):
            row["note"] = f"the baseline `{baseline}` has no sound run"
        else:
            c = paired_test(values, _by_seed(base))
            row.update(vs_baseline=c.mean_difference, test=c.test, note=c.note)
            row["p_value"] = math.nan if c.p_value is None else c.p_value
        rows.append(row)

    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "rank"])
    if summary.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    model_order = list(dict.fromkeys(table["model"]))  # the results table's model order
    summary["_m"] = summary["model"].map(model_order.index)
    summary["_s"] = summary["status"].map(status_rank)
    summary["_a"] = -summary["mean"].fillna(-math.inf)
    summary = summary.sort_values(["_m", "_s", "_a", "activation"], kind="stable")
    summary = summary.drop(columns=["_m", "_s", "_a"]).reset_index(drop=True)
    summary.insert(1, "rank", summary.groupby("model").cumcount() + 1)
    return summary[SUMMARY_COLUMNS]


def describe_model(model: str, hidden_units: list[int] | None) -> str:
    """'one hidden layer of 128 units', for the headline."""
    if model == "tutorial":
        return "the tutorial's single layer, activation(x·W + b)"
    if model != "mlp" or not hidden_units:
        return f"the {model} model"
    words = {1: "one", 2: "two", 3: "three", 4: "four"}
    n = len(hidden_units)
    count = words.get(n, str(n))
    if len(set(hidden_units)) == 1:
        layers = "layer" if n == 1 else "layers"
        return f"{count} hidden {layers} of {hidden_units[0]} units"
    return f"{count} hidden layers of {', '.join(map(str, hidden_units))} units"


def _p(p: float) -> str:
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def _against(row: pd.Series, who: str, difference: float) -> str:
    """How `who` stands in the paired comparison of `row`; `difference` = who minus the other."""
    if row["note"] and not math.isfinite(row["p_value"]):
        return f"{who}: {row['note']}"
    p = row["p_value"]
    if p < ALPHA:
        direction = "lower" if difference < 0 else "higher"
        return f"{who} is {direction} by {abs(difference):.4f} ({PAIRED_TEST}, {_p(p)})"
    return f"{who} is within noise ({PAIRED_TEST}, {_p(p)})"


def headline(model: str, summary: pd.DataFrame, table: pd.DataFrame, context: dict) -> str:
    """The one sentence answering the question for `model` (rows of that model only)."""
    baseline = context.get("baseline", DEFAULT_BASELINE)
    where = f"on {context.get('dataset', 'this data')} with "
    where += describe_model(model, context.get("hidden_units"))
    runs = table[table["model"] == model]
    sound = summary[summary["status"] == "ok"]
    if sound.empty:
        if (runs["status"] == "diverged").all():
            return f"**{model}**: every run diverged ({len(runs)} of {len(runs)}) {where}."
        return f"**{model}**: no activation trained soundly on every seed {where}."
    best = sound.iloc[0]
    text = f"**{model}**: best is `{best['activation']}` {where}: test accuracy {best['mean']:.4f}"
    if best["sound"] > 1:
        text += f" ± {best['std']:.4f} over {best['sound']} seeds"
        text += f" ({CONFIDENCE:.0%} CI {best['ci_low']:.4f}–{best['ci_high']:.4f})"
    else:
        text += " (1 seed, so no spread)"
    base = summary[summary["activation"] == baseline]
    if best["activation"] == baseline:
        text += "; it is the baseline"
        if len(sound) > 1:
            runner = sound.iloc[1]
            who = f"the runner-up `{runner['activation']}`"
            text += "; " + _against(runner, who, runner["vs_baseline"])
    elif base.empty:
        text += f"; `{baseline}` (the baseline) was not trained for {model}"
    elif base.iloc[0]["status"] != "ok" and base.iloc[0]["sound"] == 0:
        text += f"; `{baseline}` (the baseline) {base.iloc[0]['status']}"
    else:
        text += "; " + _against(best, f"`{baseline}` (the baseline)", -best["vs_baseline"])
    diverged = runs[runs["status"] == "diverged"]
    degenerate = runs[runs["status"] == "degenerate"]
    if not diverged.empty:
        text += f"; {len(diverged)} of {len(runs)} runs diverged ({_named(diverged)})"
    if not degenerate.empty:
        text += f"; {len(degenerate)} degenerate, ranked after the sound ones"
        text += f" ({_named(degenerate)})"
    return text + "."


def answer(summary: pd.DataFrame, table: pd.DataFrame, context: dict) -> list[str]:
    """The report's answer: the headline sentence of every model, in the results table's model
    order (Markdown). The report page, the terminal and the MLflow parent run all show these."""
    models = list(dict.fromkeys(table["model"]))
    return [headline(model, summary[summary["model"] == model], table, context) for model in models]


def _named(rows: pd.DataFrame) -> str:
    return ", ".join(f"`{a}`" for a in dict.fromkeys(rows["activation"]))


def best_activations(summary: pd.DataFrame) -> pd.DataFrame:
    """Per model, its top-ranked activation if that trained soundly on every seed (a model whose
    runs all failed or diverged has none): the rows of `summary` the headline names best."""
    top = summary[summary["rank"] == 1]
    return top[top["status"] == "ok"].reset_index(drop=True)


def best_run(results: list[dict], summary: pd.DataFrame, model: str) -> dict | None:
    """The run shown for `model`'s best activation: its seed with the highest test accuracy
    (ties: the lowest seed). None when the model has no best activation."""
    best = best_activations(summary)
    best = best[best["model"] == model]
    if best.empty:
        return None
    activation = best.iloc[0]["activation"]
    runs = [
        r
        for r in results
        if r["model"] == model and r["activation"] == activation and r["status"] == "ok"
        if r.get("test_accuracy") is not None and math.isfinite(r["test_accuracy"])
    ]
    return max(runs, key=lambda r: (r["test_accuracy"], -r["seed"]), default=None)


def best_overall(results: list[dict], summary: pd.DataFrame) -> dict | None:
    """The best run of the model whose best activation has the highest mean test accuracy (ties:
    the model ranked first in the table): the network logged as an MLflow model."""
    best = best_activations(summary)
    if best.empty:
        return None
    model = best.sort_values("mean", ascending=False, kind="stable").iloc[0]["model"]
    return best_run(results, summary, model)
