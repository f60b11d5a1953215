"""The report page in Markdown: the answer per model, the ranking with its statistics, why each
other activation lost or failed (and the rules that say so), every run, the explanations the runs
call for, the figures and the settings."""

import math

import pandas as pd

from tasks.core.cells import cell_label, varying_axes
from tasks.core.names import DEFAULT_BASELINE
from tasks.report.ranking import answer, summarize_activations
from tasks.report.stats import ALPHA, CONFIDENCE, PAIRED_TEST
from tasks.report.why import rules_text

MISSING = "—"  # how NaN reads in the Markdown report

# Markdown table: result column -> header a reader sees.
_MD_COLUMNS = {
    "model": "model",
    "activation": "activation",
    "seed": "seed",
    "init": "init",
    "test_accuracy": "test accuracy",
    "final_cost": "final cost",
    "status": "status",
    "seconds_per_epoch": "seconds/epoch",
}

# Hyperparameters listed at the end of the report: context key -> label.
_HYPERPARAMETERS = {
    "dataset": "dataset",
    "epochs": "epochs",
    "batch_size": "batch size",
    "learning_rate": "initial learning rate",
    "lr_decay": "learning-rate decay",
    "schedule": "learning-rate schedule",
    "optimizer": "optimiser",
    "momentum": "momentum",
    "hidden_units": "mlp hidden units",
    "standardize": "standardised inputs",
}

_DIVERGENCE_NOTE = """\
The tutorial's network is `pred = activation(x·W + b)` trained on the cost
`mean(-sum(y * log(pred)))`. That cost is a cross-entropy only when `pred` is a probability vector,
which is what softmax produces. At the tutorial's zero initialisation ReLU, leaky ReLU, ELU, SELU,
GELU, swish and tanh all output exactly 0, so the very first cost holds `0 · log(0)`, which is NaN
(and any negative output later would have no logarithm at all). Training cannot recover from a
NaN cost.
The activations that survive are not trained on a cross-entropy either. Sigmoid keeps every output
in (0, 1), so the cost stays finite and shrinks towards 0, but ten independent sigmoids are not a
distribution over the classes and a small cost does not mean good accuracy. Softplus is unbounded
above: once the true class's output passes 1 its log is positive, so the cost goes negative and
keeps falling as that output grows.
The `mlp` model avoids all of this: the activation sits in the hidden layer and the output is
softmax cross-entropy on logits."""


def _divergence_section(table: pd.DataFrame) -> list[str]:
    """The tutorial's diverged runs, each with what was measured (the first non-finite value:
    which tensor, which step), then why its cost does that."""
    rows = table[(table["model"] == "tutorial") & (table["status"] == "diverged")]
    if rows.empty:
        return []
    lines = ["## Why tutorial runs diverge", "", "Measured, per diverged run:", ""]
    for r in rows.itertuples():
        lines.append(f"- `{r.model}/{r.activation}/seed={r.seed}`: {r.reason or 'diverged'}.")
    return [*lines, "", _DIVERGENCE_NOTE, ""]


def _why_section(whys: list) -> list[str]:
    """One sentence per activation that lost or failed (tasks.report.why)."""
    if not whys:
        return []
    lines = [
        "## Why activations lost or failed",
        "",
        'From the rules below ("Inside the networks"), applied to what was measured during '
        "training:",
        "",
    ]
    return [*lines, *(f"- {w.sentence}" for w in whys), ""]


def _degenerate_section(table: pd.DataFrame) -> list[str]:
    rows = table[table["status"] == "degenerate"]
    if rows.empty:
        return []
    lines = [
        "## Degenerate runs",
        "",
        "These finished with a finite cost, but a cost that cannot be a cross-entropy of "
        "probabilities: a probability output with mean loss L on a set is right on at least "
        "2·e^-L - 1 of it, and these runs' validation accuracy falls short of that (or L < 0). "
        "Their cost fell without the classifier improving, so they are listed after the sound "
        "runs and never named best.",
        "",
    ]
    axes = varying_axes(table.to_dict("records"))
    for r in rows.to_dict("records"):
        lines.append(f"- `{cell_label(r, axes)}`: {r['reason']}.")
    return [*lines, ""]


def _symmetry_section(table: pd.DataFrame) -> list[str]:
    rows = table[(table["model"] != "tutorial") & (table["init"] == "zeros")]
    if rows.empty:
        return []
    models = ", ".join(f"`{m}`" for m in dict.fromkeys(rows["model"]))
    return [
        "## Zero-initialised hidden layers",
        "",
        f"{models} started from all-zero weights. Every unit of a hidden layer then computes the "
        "same function and receives the same gradient, so the units can never become different: "
        "the layer behaves as a single unit, whatever its width (and with ReLU-like activations, "
        "whose gradient at 0 is 0, the hidden layer does not learn at all). These runs show the "
        "symmetry problem, not what the activation can do; use `init: auto`.",
        "",
    ]


def _stages_section(stages: dict[str, dict] | None) -> list[str]:
    """Cross-run caching (tasks/data/cache.py): per stage, cached or ran, and why."""
    if not stages:
        return []
    lines = ["## Data stages", ""]
    for name, stage in stages.items():
        lines.append(f"- {name} {stage['status']}: {stage['reason']}")
    return lines + [""]


_SUMMARY_HEADERS = {
    "rank": "rank",
    "model": "model",
    "activation": "activation",
    "status": "status",
    "sound": "sound seeds",
    "accuracy": "test accuracy (mean ± std)",
    "ci": f"{CONFIDENCE:.0%} CI",
    "vs_baseline": "vs baseline",
    "p_value": "p-value",
    "why": "note",
}


def _fmt(value: float, spec: str = ".4f") -> str:
    return MISSING if value is None or not math.isfinite(value) else format(value, spec)


def _summary_markdown(summary: pd.DataFrame, baseline: str) -> str:
    """The ranking as a Markdown table: numbers formatted, NaN as a dash, the reason last."""
    rows = []
    for r in summary.assign(baseline=baseline).itertuples():
        accuracy = _fmt(r.mean)
        if math.isfinite(r.std):
            accuracy += f" ± {r.std:.4f}"
        ci = f"{_fmt(r.ci_low)}–{_fmt(r.ci_high)}" if math.isfinite(r.ci_low) else MISSING
        diff = _fmt(r.vs_baseline, "+.4f")
        p = _fmt(r.p_value, ".3g")
        # an unsound row's reason says enough; its baseline comparison did not happen anyway
        note = r.note if r.status == "ok" or r.activation == r.baseline else ""
        why = "; ".join(text for text in (r.reason, note) if text)
        rows.append(
            [r.rank, r.model, r.activation, r.status, f"{r.sound}/{r.seeds}", accuracy, ci]
            + [diff, p, why or ""]
        )
    frame = pd.DataFrame(rows, columns=list(_SUMMARY_HEADERS.values()), dtype=object)
    return frame.to_markdown(index=False, disable_numparse=True)


def _statistics_note(context: dict) -> str:
    baseline = context.get("baseline", DEFAULT_BASELINE)
    return (
        "## How sure: statistics over seeds\n\n"
        "Each activation was trained once per seed (the seed sets the initial weights and the "
        "shuffling). Test accuracy is given as the mean ± the sample standard deviation over "
        f"the seeds that trained soundly, with the {CONFIDENCE:.0%} confidence interval of the "
        "mean from Student's t distribution (mean ± t·s/√n, clipped to [0, 1]). Each "
        f"activation is compared with the baseline `{baseline}` (`sweep.baseline`) of the same "
        f"model by a two-sided {PAIRED_TEST} (scipy.stats.ttest_rel) over the seeds both "
        "trained soundly: pairing by seed removes what a seed does to every activation alike. "
        f"p < {ALPHA:.2g} counts as a difference beyond noise. With one seed there is no spread "
        "and no test: list more in `sweep.seeds`. Activations that diverged, degenerated or "
        "failed on any seed are ranked last, with the reason."
    )


def render_markdown(table: pd.DataFrame, context: dict, summary: pd.DataFrame | None = None) -> str:
    """The report page: the answer per model, the ranking with statistics, every run, the
    explanations, the figures, the settings."""
    dataset = context.get("dataset", "MNIST-format data")
    if summary is None:
        summary = summarize_activations(table, context.get("baseline", DEFAULT_BASELINE))
    lines = [f"# Which activation? {dataset}", ""]
    if table.empty:
        lines += ["No networks were trained.", ""]
    models = list(dict.fromkeys(table["model"]))
    lines += [f"- {sentence}" for sentence in answer(summary, table, context)]
    if models:
        lines += [
            "",
            "## Ranking",
            "",
            _summary_markdown(summary, context.get("baseline", DEFAULT_BASELINE)),
            "",
        ]
        lines += _why_section(context.get("why") or [])
        lines += [_statistics_note(context), ""]
        if context.get("why"):
            lines += [rules_text(), ""]
        shown = table[list(_MD_COLUMNS)].rename(columns=_MD_COLUMNS)
        shown = shown.astype(object).where(shown.notna(), None)  # None prints as MISSING
        lines += [
            "## Results: every run",
            "",
            shown.to_markdown(index=False, floatfmt=".4f", missingval=MISSING),
            "",
        ]
    lines += _divergence_section(table)
    lines += _degenerate_section(table)
    lines += _symmetry_section(table)
    section = None
    for heading, caption, file_name in context.get("figures") or []:
        if heading != section:
            lines += [f"## {heading}", ""]
            section = heading
        lines += [f"![{caption}]({file_name})", ""]
    lines += _stages_section(context.get("stages"))
    lines += ["## Settings", ""]
    for key, label in _HYPERPARAMETERS.items():
        if key in context:
            lines.append(f"- {label}: {context[key]}")
    lines.append(f"- parent MLflow run: `{context.get('parent_run_id', MISSING)}`")
    if context.get("flow_run_id"):
        lines.append(f"- Prefect flow run: `{context['flow_run_id']}`")
    if context.get("best_model_uri"):
        lines.append(f"- best network as an MLflow model: `{context['best_model_uri']}`")
    return "\n".join(lines) + "\n"
