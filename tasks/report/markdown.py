"""The report page in Markdown: the answer per (model, depth), the ranking with its statistics,
the learning rates tried, why each other activation lost or failed (and the rules that say so),
every run, the explanations the runs call for, the figures and the settings."""

import math

import pandas as pd

from tasks.core.cells import cell_label, varying_axes
from tasks.core.names import DEFAULT_BASELINE
from tasks.report.ranking import (
    group_rows,
    groups,
    headline,
    learning_rate_table,
    separation,
    stopping_note,
    summarize_activations,
)
from tasks.report.stats import ALPHA, CONFIDENCE, MCNEMAR, PAIRED_TEST
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
    "learning_rates": "initial learning rates tried (sweep.learning_rates)",
    "hidden_units": "mlp hidden units",
    "depths": "mlp depths tried, in hidden layers (sweep.depths)",
    "seeds": "seeds (sweep.seeds)",
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


def _fmt(value: float, spec: str = ".4f") -> str:
    if value is None or pd.isna(value) or not math.isfinite(value):
        return MISSING
    return format(int(value) if spec == "d" else value, spec)


def _several(frame: pd.DataFrame, column: str) -> bool:
    """Whether a swept column takes more than one value within a model (then tables show it)."""
    return bool((frame.groupby("model")[column].nunique(dropna=False) > 1).any())


def _summary_markdown(summary: pd.DataFrame, baseline: str, table: pd.DataFrame) -> str:
    """The ranking as a Markdown table: numbers formatted, NaN as a dash, the reason last. Depth,
    learning rate and the t-test column appear only when they were swept or exist."""
    depths, rates = _several(table, "depth"), _several(table, "learning_rate")
    headers = ["rank", "model", *(["depth"] if depths else []), "activation"]
    headers += ["learning rate"] if rates else []
    headers += ["status", "sound seeds", "test accuracy (mean ± std)", f"{CONFIDENCE:.0%} CI"]
    headers += ["verdict", "vs best", "p vs best (Holm)"]
    headers += ["vs baseline", "p vs baseline", "note"]
    rows = []
    for r in summary.assign(baseline=baseline).itertuples():
        accuracy = _fmt(r.mean)
        if math.isfinite(r.std):
            accuracy += f" ± {r.std:.4f}"
        ci = f"{_fmt(r.ci_low)}–{_fmt(r.ci_high)}" if math.isfinite(r.ci_low) else MISSING
        # an unsound row's reason says enough; its baseline comparison did not happen anyway
        note = r.note if r.status == "ok" or r.activation == r.baseline else ""
        why = "; ".join(text for text in (r.reason, note) if text)
        row = [r.rank, r.model, *([_fmt(r.depth, "d")] if depths else []), r.activation]
        row += [_fmt(r.learning_rate, "g")] if rates else []
        row += [r.status, f"{r.sound}/{r.seeds}", accuracy, ci]
        p_best = _fmt(r.p_vs_best, ".3g") + (f" ({r.test_vs_best})" if r.test_vs_best else "")
        if r.test_vs_best == MCNEMAR and math.isfinite(r.t_p_vs_best):  # the t-test beside it
            p_best += f"; t-test {r.t_p_vs_best:.3g}"
        row += [r.verdict or MISSING, _fmt(r.vs_best, "+.4f"), p_best]
        row += [_fmt(r.vs_baseline, "+.4f"), _fmt(r.p_value, ".3g"), why or ""]
        rows.append(row)
    frame = pd.DataFrame(rows, columns=headers, dtype=object)
    return frame.to_markdown(index=False, disable_numparse=True)


def _rates_markdown(table: pd.DataFrame) -> list[str]:
    """The learning rates tried: mean validation accuracy per (model, depth, activation) and
    rate, the chosen one in bold. Nothing when a single rate was tried."""
    rates = learning_rate_table(table)
    if rates.empty or rates["learning_rate"].nunique() < 2:
        return []
    columns = sorted(rates["learning_rate"].dropna().unique())
    depths = _several(rates, "depth")
    rows = []
    for (model, depth, activation), group in rates.groupby(
        ["model", "depth", "activation"], sort=False, dropna=False
    ):
        by_rate = group.set_index("learning_rate")
        cells = []
        for rate in columns:
            if rate not in by_rate.index:
                cells.append(MISSING)
                continue
            r = by_rate.loc[rate]
            text = _fmt(r["val_accuracy"])
            if r["sound"] < r["seeds"]:
                text += f" ({r['seeds'] - r['sound']} unsound)"
            cells.append(f"**{text}**" if r["chosen"] else text)
        rows.append([model, *([_fmt(depth, "d")] if depths else []), activation, *cells])
    headers = ["model", *(["depth"] if depths else []), "activation"]
    headers += [f"lr {rate:g}" for rate in columns]
    frame = pd.DataFrame(rows, columns=headers, dtype=object)
    return [
        "## Learning rates: validation accuracy",
        "",
        "Mean final validation accuracy over the seeds every rate was trained with; **bold**: the "
        "rate each activation is ranked at (the highest; the test split plays no part).",
        "",
        frame.to_markdown(index=False, disable_numparse=True),
        "",
    ]


def _statistics_note(context: dict) -> str:
    baseline = context.get("baseline", DEFAULT_BASELINE)
    seeds = context.get("seeds")
    adaptive = isinstance(seeds, dict) and seeds.get("until_separated")
    text = (
        "## How sure: the statistics\n\n"
        "Within each model and depth, every other activation is compared with the best (the "
        "highest mean test accuracy), each at its own learning rate.\n\n"
        f"- **{MCNEMAR}'s exact test on paired test predictions.** Every network is scored on "
        "the same test images, so two can be compared image by image, even with one seed: only "
        "the images one got right and the other wrong carry evidence, and if the two were "
        "equally accurate each such image would go either way with probability ½ (a two-sided "
        "exact binomial test, scipy.stats.binomtest). With several seeds it is pooled: an image "
        "counts for the side that got it right on more of the shared seeds.\n"
        "- **Holm's correction for the number of comparisons:** within a model and depth, the "
        "k-th smallest of m p-values is multiplied by m − k + 1 (then made non-decreasing).\n"
        f"- **The verdict:** an activation is *worse* when its corrected p < {ALPHA:.2g} and no "
        "seed orders the two the other way round; otherwise it **cannot be told apart** from "
        "the best: they tie. One activation is named the single best only when every other is "
        "worse.\n"
        f"- **With two seeds or more, the {PAIRED_TEST} over seeds** (scipy.stats.ttest_rel, "
        "Holm-corrected the same way) is given beside McNemar: McNemar asks whether these "
        "networks would differ on new images, the t-test whether another seed could reverse "
        "the order. For runs that recorded no test predictions the verdict rests on the t-test; "
        "each statement names its test.\n\n"
        "Test accuracy is the mean ± the sample standard deviation over the seeds that trained "
        f"soundly, with the {CONFIDENCE:.0%} confidence interval of the mean from Student's t "
        "(mean ± t·s/√n, clipped to [0, 1]). Each activation is also compared with the baseline "
        f"`{baseline}` (`sweep.baseline`) by the same rule, uncorrected. When several learning "
        "rates are tried, each activation is ranked at the rate with the best mean validation "
        "accuracy: the test split never chooses. Activations that diverged, degenerated or "
        "failed on any seed are ranked last, with the reason."
    )
    if adaptive:
        text += (
            f"\n\nSeeds were added one at a time, up to {seeds.get('max')}, while a model's best "
            "activation and its runner-up could not be told apart. Looking again after each seed "
            f"makes a false separation more likely than {ALPHA:.2g}: read a separation found only "
            "after several seeds as weaker evidence than one found at once."
        )
    return text


def _answer(table: pd.DataFrame, summary: pd.DataFrame, context: dict) -> list[str]:
    """One bullet per (model, depth): the headline, then the chosen learning rates (when several
    were tried) and why it has the seeds it has (when seeds were added while it was close)."""
    seeds = context.get("seeds")
    adaptive = isinstance(seeds, dict) and seeds.get("until_separated")
    stops = {(s.model, s.depth): s for s in separation(summary, table)} if adaptive else {}
    several_rates = _several(table, "learning_rate")
    lines = []
    for model, depth in groups(summary):
        rows = group_rows(summary, model, depth)
        lines.append(f"- {headline(model, rows, table, context)}")
        sound = rows[rows["status"] == "ok"]
        if several_rates and not sound.empty:
            chosen = ", ".join(f"`{r.activation}` {r.learning_rate:g}" for r in sound.itertuples())
            lines.append(f"    - learning rate chosen on validation accuracy: {chosen}")
        if (model, depth) in stops:
            first = len(seeds.get("start") or [0])
            note = stopping_note(stops[(model, depth)], int(seeds.get("max", 1)), first)
            lines.append(f"    - seeds: {note}")
    return lines


def _setting(value) -> str:
    if isinstance(value, dict):  # sweep.seeds as a mapping
        return ", ".join(f"{k}: {_setting(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def render_markdown(table: pd.DataFrame, context: dict, summary: pd.DataFrame | None = None) -> str:
    """The report page: the answer per (model, depth), the ranking with statistics, the learning
    rates tried, every run, the explanations, the figures, the settings."""
    dataset = context.get("dataset", "MNIST-format data")
    if summary is None:
        summary = summarize_activations(table, context.get("baseline", DEFAULT_BASELINE))
    lines = [f"# Which activation? {dataset}", ""]
    if table.empty:
        lines += ["No networks were trained.", ""]
    lines += _answer(table, summary, context)
    if not table.empty:
        lines += [
            "",
            "## Ranking",
            "",
            _summary_markdown(summary, context.get("baseline", DEFAULT_BASELINE), table),
            "",
        ]
        lines += _why_section(context.get("why") or [])
        lines += [_statistics_note(context), ""]
        if context.get("why"):
            lines += [rules_text(), ""]
        lines += _rates_markdown(table)
        keys = ["model", *(["depth"] if _several(table, "depth") else []), "activation"]
        keys += ["learning_rate"] if _several(table, "learning_rate") else []
        keys += [k for k in _MD_COLUMNS if k not in keys]
        columns = {k: _MD_COLUMNS.get(k, k.replace("_", " ")) for k in keys}
        shown = table[keys].rename(columns=columns)
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
        if key == "learning_rate" and context.get("learning_rates"):
            continue  # each network trained at one of the rates tried instead
        if context.get(key) is not None:
            lines.append(f"- {label}: {_setting(context[key])}")
    lines.append(f"- parent MLflow run: `{context.get('parent_run_id', MISSING)}`")
    if context.get("flow_run_id"):
        lines.append(f"- Prefect flow run: `{context['flow_run_id']}`")
    if context.get("best_model_uri"):
        line = f"- best network as an MLflow model: `{context['best_model_uri']}`"
        if context.get("best_model_tied_with"):
            tied = ", ".join(f"`{a}`" for a in context["best_model_tied_with"].split(", "))
            line += f" (a tie: {tied} cannot be told apart from it)"
        lines.append(line)
    return "\n".join(lines) + "\n"
