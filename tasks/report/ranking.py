"""From the per-run results table to the answer: per (model, depth), each activation at its own
learning rate, ranked, compared with the best, and the one sentence that heads the report.

1. **Learning rate** (`choose_learning_rates`): for each (model, depth, activation), the rate with
   the highest mean VALIDATION accuracy over the seeds every rate was trained with (a rate with a
   run that did not train soundly only wins if no rate trained soundly throughout; ties: the
   smaller rate). Nothing of the test split enters the choice.
2. **Ranking** within a (model, depth), each activation at its chosen rate: those whose every
   seed trained soundly (`ok`) first, by mean test accuracy; then those with a degenerate run,
   then a diverged one, then runs that failed or never finished. Only a fully sound activation
   can be named best. Each unsound row says why.
3. **Ties** (`summarize_activations`): every other sound activation is compared with the best
   by McNemar's exact test on their paired test predictions (`tasks.report.stats.mcnemar`;
   pooled image by image over the seeds both trained), or by the paired t-test over seeds for
   runs that recorded no predictions. The p-values of one (model, depth) are Holm-corrected
   together. An activation is `worse` when its corrected p < ALPHA and no seed orders the two
   the other way round; otherwise it cannot be told apart from the best (`tie`). With one seed
   and no predictions nothing can be tested (`untested`). The paired t-test over seeds is
   computed beside McNemar whenever there are two seeds or more.
4. **More seeds** (`separation`, `more_seeds`): with `sweep.seeds: {until_separated: true}`, a
   (model, depth) whose best and runner-up tie gets one more seed for every sound activation, up
   to the maximum.

This is the project's one definition of "best" (`tied_best`, `best_run`, `best_overall`): the
report, `actlab runs` and the logged MLflow model all use it, and a tie is shown as a tie.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.core.names import DEFAULT_BASELINE, status_rank
from tasks.report.stats import (
    ALPHA,
    CONFIDENCE,
    MCNEMAR,
    PAIRED_TEST,
    Comparison,
    holm,
    mcnemar,
    paired_test,
    summarize,
)
from tasks.report.table import depth_of

SUMMARY_COLUMNS = [
    "model",
    "depth",
    "rank",
    "activation",
    "learning_rate",
    "status",
    "verdict",
    "seeds",
    "sound",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "val_accuracy",
    "vs_best",
    "p_vs_best",
    "test_vs_best",
    "reversed_on",
    "mcnemar_p_vs_best",
    "t_p_vs_best",
    "vs_baseline",
    "p_value",
    "test",
    "note",
    "reason",
]
RATE_COLUMNS = [
    "model",
    "depth",
    "activation",
    "learning_rate",
    "val_accuracy",
    "seeds",
    "sound",
    "chosen",
]
# verdicts of a sound activation against the best of its (model, depth)
BEST, TIE, WORSE, UNTESTED = "best", "tie", "worse", "untested"
NO_DEPTH = -1  # the depth key of networks whose layers were not recorded
NO_RATE = -1.0  # the rate key of networks whose learning rate was not recorded

Correct = Mapping[str, np.ndarray]  # run id -> (test images,) bool: classified right


def correct_by_run(results: list[dict]) -> dict[str, np.ndarray]:
    """Per run id, which test images its network classified right, from the recorded test
    predictions and labels (runs without them are left out)."""
    out = {}
    for r in results:
        predicted, labels = r.get("test_predictions"), r.get("test_labels")
        if predicted is not None and labels is not None and len(predicted) == len(labels):
            out[r["run_id"]] = np.asarray(predicted) == np.asarray(labels)
    return out


def _keys(table: pd.DataFrame) -> pd.DataFrame:
    """The table with `_d` and `_lr`: depth and rate as plain numbers (unknown as a sentinel), so
    they group and compare like any other value."""
    return table.assign(
        _d=table["depth"].astype("Int64").fillna(NO_DEPTH).astype(int),
        _lr=table["learning_rate"].astype(float).fillna(NO_RATE),
    )


def _seeds(seeds) -> str:
    seeds = sorted(int(s) for s in seeds)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _sound(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["status"] == "ok") & rows["test_accuracy"].notna()]


def choose_learning_rates(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, depth, activation, learning rate) tried: the mean final validation
    accuracy over the seeds every rate of that activation was trained with, and `chosen` for the
    one kept. Reads only the validation accuracy and the status: never the test split."""
    rows = []
    keyed = _keys(table)
    for (model, depth, activation), group in keyed.groupby(
        ["model", "_d", "activation"], sort=False
    ):
        by_rate = dict(tuple(group.groupby("_lr", sort=True)))
        # the seeds every rate was trained with: seeds added later for the chosen rate only must
        # not change the choice
        common = set.intersection(*(set(g["seed"]) for g in by_rate.values()))
        candidates = []
        for rate, runs in by_rate.items():
            runs = runs[runs["seed"].isin(common)]
            values = runs["val_accuracy"].astype(float)
            sound = int((runs["status"] == "ok").sum())
            mean = float(values.mean()) if values.notna().any() else math.nan
            candidates.append((rate, mean, len(runs), sound))
        # all seeds sound first, then the best mean validation accuracy, then the smaller rate
        best = min(
            candidates,
            key=lambda c: (c[3] < c[2], -(c[1] if math.isfinite(c[1]) else -math.inf), c[0]),
        )
        for rate, mean, n, sound in candidates:
            rows.append(
                {
                    "model": model,
                    "depth": depth,
                    "activation": activation,
                    "learning_rate": math.nan if rate == NO_RATE else rate,
                    "val_accuracy": mean,
                    "seeds": n,
                    "sound": sound,
                    "chosen": rate == best[0],
                }
            )
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


def _at_chosen_rates(keyed: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    chosen = rates[rates["chosen"]]
    picked = set(
        zip(
            chosen["model"],
            chosen["depth"],
            chosen["activation"],
            chosen["learning_rate"].fillna(NO_RATE),
            strict=True,
        )
    )
    mask = [
        (m, d, a, lr) in picked
        for m, d, a, lr in zip(
            keyed["model"], keyed["_d"], keyed["activation"], keyed["_lr"], strict=True
        )
    ]
    return keyed[mask]


@dataclass(frozen=True)
class Evidence:
    """Two activations compared: the test a statement rests on, both tests as computed, and the
    seeds on which the order is the reverse of the pooled one."""

    primary: Comparison  # McNemar when test predictions were recorded, else the t-test
    mcnemar: Comparison | None  # None without test predictions on every shared seed
    t_test: Comparison  # its p-value is None with fewer than two shared seeds: see its note
    reversed_on: tuple[int, ...] = ()  # seeds where the first is ahead though behind overall

    def beyond_noise(self) -> bool:
        """The first is behind the second, and no seed says otherwise."""
        return self.primary.mean_difference < 0 and not self.reversed_on


@dataclass(frozen=True)
class _Seeds:
    """One activation's sound runs (at its chosen rate) by seed: test accuracy and run id."""

    accuracy: dict[int, float]
    run_id: dict[int, str]

    @classmethod
    def of(cls, rows: pd.DataFrame) -> "_Seeds":
        sound = _sound(rows)
        seeds = sound["seed"].astype(int)
        return cls(
            dict(zip(seeds, sound["test_accuracy"].astype(float), strict=True)),
            dict(zip(seeds, sound["run_id"], strict=True)),
        )


def compare(a: _Seeds, b: _Seeds, correct: Correct) -> Evidence:
    """One activation's sound runs `a` against another's `b` on the seeds both trained soundly.

    The test a statement rests on is McNemar's exact test on their test predictions, pooled over
    the shared seeds (with one seed, McNemar's test itself); without recorded predictions, the
    paired t-test over seeds. The t-test is computed beside it whenever there are two seeds.
    `reversed_on`: the seeds whose accuracies order the two the other way round from all seeds
    together (then the seeds disagree, whatever the p-value)."""
    acc_a, acc_b = a.accuracy, b.accuracy
    t_test = paired_test(acc_a, acc_b)
    run_a, run_b = a.run_id, b.run_id
    shared = sorted(run_a.keys() & run_b.keys())
    exact = None
    if shared and all(run_a[s] in correct and run_b[s] in correct for s in shared):
        first = [correct[run_a[s]] for s in shared]
        second = [correct[run_b[s]] for s in shared]
        if len({x.shape for x in first + second}) == 1:  # the same test images
            exact = mcnemar(np.stack(first), np.stack(second))
    primary = exact if exact is not None else t_test
    overall = np.sign(primary.mean_difference) if math.isfinite(primary.mean_difference) else 0
    reversed_on = tuple(s for s in shared if np.sign(acc_a[s] - acc_b[s]) == -overall != 0)
    return Evidence(primary, exact, t_test, reversed_on)


def summarize_activations(
    table: pd.DataFrame, baseline: str, correct: Correct | None = None
) -> pd.DataFrame:
    """One ranked row per (model, depth, activation) of a `results_table`, at the activation's
    chosen learning rate; see the module docstring.

    mean/std/ci_*: test accuracy over the sound (`ok`) seeds, the interval clipped to [0, 1].
    verdict, vs_best, p_vs_best, test_vs_best: against the best of the same (model, depth), by
    the test `compare` rests on; reversed_on: the seeds on which the order is the other way
    round; mcnemar_p_vs_best and t_p_vs_best: both tests as computed. All three p-value columns
    are Holm-corrected within the (model, depth).
    vs_baseline, p_value, test: against `baseline` at its own chosen rate, uncorrected; `note`
    says why a p-value is missing. `correct`: per run id, its test images classified right
    (`correct_by_run`); without it there is no McNemar test.
    """
    correct = correct or {}
    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rates = choose_learning_rates(table)
    keyed = _at_chosen_rates(_keys(table), rates)
    val = rates[rates["chosen"]].set_index(["model", "depth", "activation"])["val_accuracy"]
    rows = []
    groups = dict(tuple(keyed.groupby(["model", "_d", "activation"], sort=False)))
    # each activation's sound runs by seed, read once for all its comparisons
    seeds = {key: _Seeds.of(group) for key, group in groups.items()}
    for (model, depth, activation), group in groups.items():
        status = max(group["status"], key=status_rank)  # the most severe of its runs
        reason = ""
        if status != "ok":
            bad = group[group["status"] != "ok"]
            first = next((r for r in bad["reason"] if r), "")
            worst = bad[bad["status"] == status]
            reason = f"{status} on {_seeds(worst['seed'])} of {len(group)}"
            reason += f": {first}" if first else ""
        s = summarize(_sound(group)["test_accuracy"].astype(float).tolist())
        row = {
            "model": model,
            "depth": depth,
            "activation": activation,
            "learning_rate": float(group["_lr"].iloc[0]),
            "status": status,
            "verdict": "",
            "seeds": len(group),
            "sound": s.n,
            "mean": s.mean,
            "std": s.std,
            # an accuracy lies in [0, 1]; so does what can be said about its mean
            "ci_low": max(s.ci_low, 0.0) if math.isfinite(s.ci_low) else s.ci_low,
            "ci_high": min(s.ci_high, 1.0) if math.isfinite(s.ci_high) else s.ci_high,
            "val_accuracy": float(val.get((model, depth, activation), math.nan)),
            "vs_best": math.nan,
            "p_vs_best": math.nan,
            "test_vs_best": "",
            "reversed_on": "",
            "mcnemar_p_vs_best": math.nan,
            "t_p_vs_best": math.nan,
            "vs_baseline": math.nan,
            "p_value": math.nan,
            "test": "",
            "note": "",
            "reason": reason,
        }
        base = seeds.get((model, depth, baseline))
        if activation == baseline:
            row["note"] = "the baseline"
        elif base is None:
            row["note"] = f"no `{baseline}` baseline for {model}"
        elif not base.run_id:
            row["note"] = f"the baseline `{baseline}` has no sound run"
        else:
            c = compare(seeds[model, depth, activation], base, correct).primary
            row.update(vs_baseline=c.mean_difference, test=c.test, note=c.note)
            row["p_value"] = math.nan if c.p_value is None else c.p_value
        rows.append(row)

    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "rank"])
    model_order = list(dict.fromkeys(table["model"]))  # the results table's model order
    summary["_m"] = summary["model"].map(model_order.index)
    summary["_s"] = summary["status"].map(status_rank)
    summary["_a"] = -summary["mean"].fillna(-math.inf)
    summary = summary.sort_values(["_m", "depth", "_s", "_a", "activation"], kind="stable")
    summary = summary.drop(columns=["_m", "_s", "_a"]).reset_index(drop=True)
    summary.insert(2, "rank", summary.groupby(["model", "depth"]).cumcount() + 1)
    for _, group in summary.groupby(["model", "depth"], sort=False):
        _against_best(summary, group.index, seeds, correct)
    summary["depth"] = summary["depth"].where(summary["depth"] != NO_DEPTH).astype("Int64")
    summary["learning_rate"] = summary["learning_rate"].where(summary["learning_rate"] != NO_RATE)
    return summary[SUMMARY_COLUMNS]


def _against_best(
    summary: pd.DataFrame, index, seeds: dict[tuple, _Seeds], correct: Correct
) -> None:
    """Fill the verdict and the comparison with the best for one (model, depth); `seeds`: each
    (model, depth, activation)'s sound runs."""
    group = summary.loc[index]
    sound = group[group["status"] == "ok"]
    if sound.empty:
        return
    model, depth = sound.iloc[0]["model"], sound.iloc[0]["depth"]
    best = sound.index[0]
    summary.loc[best, "verdict"] = BEST
    best_runs = seeds[model, depth, summary.loc[best, "activation"]]
    others = list(sound.index[1:])
    if not others:
        return
    found = [
        compare(seeds[model, depth, summary.loc[i, "activation"]], best_runs, correct)
        for i in others
    ]

    def p_values(tests):  # Holm over the group: one family per column
        return holm([math.nan if c is None or c.p_value is None else c.p_value for c in tests])

    primary = p_values([e.primary for e in found])
    verdicts = []
    for p, e in zip(primary, found, strict=True):
        if not math.isfinite(p):
            verdicts.append(UNTESTED)
        elif p < ALPHA and e.beyond_noise():
            verdicts.append(WORSE)
        else:
            verdicts.append(TIE)
    # one write per column (a write per cell was most of the ranking's time)
    for column, values in (
        ("vs_best", [e.primary.mean_difference for e in found]),
        ("test_vs_best", [e.primary.test for e in found]),
        ("reversed_on", [", ".join(map(str, e.reversed_on)) for e in found]),
        ("p_vs_best", primary),
        ("mcnemar_p_vs_best", p_values([e.mcnemar for e in found])),
        ("t_p_vs_best", p_values([e.t_test for e in found])),
        ("verdict", verdicts),
    ):
        summary.loc[others, column] = values


def groups(summary: pd.DataFrame) -> list[tuple[str, int | None]]:
    """The (model, depth) pairs of a summary, in its order (depth None: not recorded)."""
    pairs = zip(summary["model"], summary["depth"], strict=True)
    return list(dict.fromkeys((m, None if pd.isna(d) else int(d)) for m, d in pairs))


def group_rows(frame: pd.DataFrame, model: str, depth: int | None) -> pd.DataFrame:
    """The rows of one (model, depth) of a summary or results table."""
    same_depth = frame["depth"].isna() if depth is None else frame["depth"] == depth
    return frame[(frame["model"] == model) & same_depth.fillna(False).astype(bool)]


def tied_best(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows named best: per (model, depth), the best and every activation that cannot be told
    apart from it (untested ones included: nothing says they are worse), best first."""
    return summary[summary["verdict"].isin([BEST, TIE, UNTESTED])].reset_index(drop=True)


def best_activations(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model, depth), its top-ranked activation if that trained soundly on every seed (a
    group whose runs all failed or diverged has none)."""
    return summary[summary["verdict"] == BEST].reset_index(drop=True)


# --- how many seeds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Separation:
    """Whether a (model, depth)'s best activation can be told apart from its runner-up."""

    model: str
    depth: int | None
    seeds: tuple[int, ...]  # the seeds its activations were trained with, at their chosen rates
    separated: bool
    reason: str  # in words, e.g. "`relu` and `leaky_relu` cannot be told apart (McNemar, p = 0.4)"


def separation(summary: pd.DataFrame, table: pd.DataFrame) -> list[Separation]:
    """Per (model, depth) of `summary`: can its best and runner-up be told apart?"""
    keyed = _keys(table)
    out = []
    for model, depth in groups(summary):
        rows = group_rows(summary, model, depth)
        sound = rows[rows["status"] == "ok"]
        d = NO_DEPTH if depth is None else depth
        runs = keyed[(keyed["model"] == model) & (keyed["_d"] == d)]
        chosen = set(zip(rows["activation"], rows["learning_rate"].fillna(NO_RATE), strict=True))
        at_rate = [(a, lr) in chosen for a, lr in zip(runs["activation"], runs["_lr"], strict=True)]
        seeds = tuple(sorted(set(runs[at_rate]["seed"].astype(int))))
        if len(sound) < 2:
            only = f"only `{sound.iloc[0]['activation']}`" if len(sound) else "no activation"
            reason = f"nothing to separate: {only} trained soundly"
            out.append(Separation(model, depth, seeds, True, reason))
            continue
        best, runner = sound.iloc[0], sound.iloc[1]
        pair = f"`{best['activation']}` and the runner-up `{runner['activation']}`"
        p = runner["p_vs_best"]
        if runner["verdict"] == WORSE:
            text = f"{pair} are told apart ({runner['test_vs_best']}, {_p(p)})"
            out.append(Separation(model, depth, seeds, True, text))
        elif runner["verdict"] == UNTESTED:
            text = f"{pair} could not be tested: one seed and no test predictions recorded"
            out.append(Separation(model, depth, seeds, False, text))
        elif runner["reversed_on"] and p < ALPHA:
            text = f"{pair} cannot be told apart: the seeds disagree on the order"
            out.append(Separation(model, depth, seeds, False, text))
        else:
            text = f"{pair} cannot be told apart ({runner['test_vs_best']}, {_p(p)})"
            out.append(Separation(model, depth, seeds, False, text))
    return out


def more_seeds(
    summary: pd.DataFrame, table: pd.DataFrame, max_seeds: int
) -> list[tuple[str, int | None, str, float | None, int]]:
    """The networks to train next: for each (model, depth) whose best and runner-up cannot be told
    apart and which has fewer than `max_seeds` seeds, every sound activation at its chosen rate on
    the next seed (one more than the largest used). (model, depth, activation, rate, seed)."""
    todo = []
    for s in separation(summary, table):
        if s.separated or len(s.seeds) >= max_seeds:
            continue
        seed = max(s.seeds, default=-1) + 1
        rows = group_rows(summary, s.model, s.depth)
        for r in rows[rows["status"] == "ok"].itertuples():
            rate = None if pd.isna(r.learning_rate) else float(r.learning_rate)
            todo.append((s.model, s.depth, r.activation, rate, seed))
    return todo


def stopping_note(s: Separation, max_seeds: int, first: int) -> str:
    """Why a (model, depth) was trained with the seeds it has (`sweep.seeds: {until_separated}`)."""
    n = len(s.seeds)
    count = f"{n} seed" + ("s" if n != 1 else "")
    if s.separated:
        if n <= first:
            return f"{count} (`sweep.seeds.start`) sufficed: {s.reason}"
        return f"stopped at {count}, once separated: {s.reason}"
    if n >= max_seeds:
        return f"stopped at {count}, the maximum (`sweep.seeds.max`): {s.reason}"
    return f"stopped at {count}, short of the maximum {max_seeds} (the run ended early): {s.reason}"


# --- the sentence ------------------------------------------------------------------------------


def describe_model(model: str, hidden_units: list[int] | None) -> str:
    """'one hidden layer of 128 units', for the headline."""
    if model == "tutorial":
        return "the tutorial's single layer, activation(x·W + b)"
    if model != "mlp" or not hidden_units:
        return f"the {model} model"
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
    n = len(hidden_units)
    count = words.get(n, str(n))
    if len(set(hidden_units)) == 1:
        layers = "layer" if n == 1 else "layers"
        return f"{count} hidden {layers} of {hidden_units[0]} units"
    return f"{count} hidden layers of {', '.join(map(str, hidden_units))} units"


def hidden_units_of(depth: int | None, context: dict) -> list[int] | None:
    """The hidden layer sizes of a (model, depth): as configured, or `depth` layers of its width."""
    configured = list(context.get("hidden_units") or [])
    if depth is None or depth == len(configured) or not configured:
        return configured or None
    return [configured[0]] * depth


def _p(p: float) -> str:
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def _points(difference: float) -> str:
    """An accuracy difference in percentage points, e.g. 'by 2.7 points'."""
    points = abs(difference) * 100
    return f"{points:.1f} points" if points >= 1 else f"{points:.2f} points"


def _named(rows: pd.DataFrame) -> str:
    return ", ".join(f"`{a}`" for a in dict.fromkeys(rows["activation"]))


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _test_words(rows: pd.DataFrame) -> str:
    """How the comparisons of a group were made, e.g. 'McNemar, 1 seed' or 'paired t-test over
    3 seeds'."""
    seeds = int(rows["sound"].max()) if len(rows) else 0
    words = {
        MCNEMAR: f"McNemar pooled over {seeds} seeds" if seeds > 1 else "McNemar, 1 seed",
        PAIRED_TEST: f"{PAIRED_TEST} over {seeds} seeds",
    }
    return "; ".join(words.get(t, t) for t in sorted(set(rows["test_vs_best"]) - {""}))


def _spread(best: pd.Series) -> str:
    if best["sound"] > 1:
        return (
            f" ± {best['std']:.4f} over {best['sound']} seeds"
            f" ({CONFIDENCE:.0%} CI {best['ci_low']:.4f}–{best['ci_high']:.4f})"
        )
    return " (1 seed, so no spread)"


def _worse_list(worse: pd.DataFrame) -> str:
    return ", ".join(
        f"`{r.activation}` by {_points(r.vs_best)} ({_p(r.p_vs_best)})" for r in worse.itertuples()
    )


def _baseline_clause(model: str, summary: pd.DataFrame, context: dict) -> str:
    """What the headline says of `sweep.baseline` when the verdicts do not: it was not trained
    here, or it did not train soundly."""
    baseline = context.get("baseline", DEFAULT_BASELINE)
    base = summary[summary["activation"] == baseline]
    if base.empty:
        return f"; `{baseline}` (the baseline) was not trained for {model}"
    if base.iloc[0]["status"] != "ok" and base.iloc[0]["sound"] == 0:
        return f"; `{baseline}` (the baseline) {base.iloc[0]['status']}"
    return ""


def headline(model: str, summary: pd.DataFrame, table: pd.DataFrame, context: dict) -> str:
    """The one sentence answering the question for one (model, depth): `summary` holds that
    group's rows only, `table` may hold every run."""
    depth = groups(summary)[0][1] if len(summary) else None
    where = f"on {context.get('dataset', 'this data')} with "
    where += describe_model(model, hidden_units_of(depth, context))
    runs = group_rows(table, model, depth) if "depth" in table else table[table["model"] == model]
    runs = _at_chosen_rates(_keys(runs), choose_learning_rates(runs)) if len(runs) else runs
    sound = summary[summary["status"] == "ok"]
    if sound.empty:
        if len(runs) and (runs["status"] == "diverged").all():
            return f"**{model}**: every run diverged ({len(runs)} of {len(runs)}) {where}."
        return f"**{model}**: no activation trained soundly on every seed {where}."
    best = sound.iloc[0]
    ties = sound[sound["verdict"] == TIE]
    worse = sound[sound["verdict"] == WORSE]
    untested = sound[sound["verdict"] == UNTESTED]
    compared = sound.iloc[1:]
    accuracy = f"test accuracy {best['mean']:.4f}{_spread(best)}"
    if len(sound) == 1:
        text = f"**{model}**: best is `{best['activation']}` {where}: {accuracy}; "
        text += "the only activation that trained soundly"
    elif not untested.empty:
        text = (
            f"**{model}**: `{best['activation']}` has the highest mean {where}: {accuracy}, "
            f"but nothing tests it against {_named(untested)} (one seed and no test predictions "
            "recorded: run more seeds)"
        )
        if not ties.empty:
            text += f"; {_named(ties)} cannot be told apart from it"
        if not worse.empty:
            text += "; worse: " + _worse_list(worse)
    elif ties.empty:
        text = f"**{model}**: best is `{best['activation']}` {where}: {accuracy}; every other "
        text += f"activation is worse ({_test_words(compared)}, Holm-corrected): "
        text += _worse_list(worse)
    else:
        tied = pd.concat([sound.iloc[[0]], ties])
        names = _and([f"`{a}`" for a in tied["activation"]])
        low, high = tied["mean"].min(), tied["mean"].max()
        quiet = ties[ties["p_vs_best"] >= ALPHA]
        text = f"**{model}**: {names} tie for best {where}: test accuracy {low:.4f}–{high:.4f}"
        if not quiet.empty:
            p_low = quiet["p_vs_best"].min()
            p_words = f"p ≥ {p_low:.2g}" if p_low < 1 else "p = 1"
            text += f" (against `{best['activation']}`, {_test_words(compared)}: "
            text += f"Holm-corrected {p_words})"
        for r in ties[ties["p_vs_best"] < ALPHA].itertuples():
            text += (
                f"; the seeds disagree on `{r.activation}`: behind overall ({_p(r.p_vs_best)}) "
                f"but ahead on seed {r.reversed_on}"
            )
        if not worse.empty:
            text += "; worse: " + _worse_list(worse)
    text += _baseline_clause(model, summary, context)
    diverged = runs[runs["status"] == "diverged"]
    degenerate = runs[runs["status"] == "degenerate"]
    if not diverged.empty:
        text += f"; {len(diverged)} of {len(runs)} runs diverged ({_named(diverged)})"
    if not degenerate.empty:
        text += f"; {len(degenerate)} degenerate, ranked after the sound ones"
        text += f" ({_named(degenerate)})"
    return text + "."


def answer(summary: pd.DataFrame, table: pd.DataFrame, context: dict) -> list[str]:
    """The report's answer: the headline sentence of every (model, depth), in the summary's
    order (Markdown). The report page, the terminal and the MLflow parent run all show these."""
    return [
        headline(model, group_rows(summary, model, depth), table, context)
        for model, depth in groups(summary)
    ]


# --- the network to show and to log -------------------------------------------------------------


def best_run(
    results: list[dict], summary: pd.DataFrame, model: str, depth: int | None = None
) -> dict | None:
    """The run shown for the best activation of (`model`, `depth`; None: the model's first
    group): at its chosen rate, the seed with the highest test accuracy (ties: the lowest seed).
    None when the group has no best activation."""
    best = best_activations(summary)
    best = best[best["model"] == model]
    if depth is not None:
        best = best[best["depth"] == depth]
    if best.empty:
        return None
    row = best.iloc[0]
    rate = row["learning_rate"]
    want_depth = None if pd.isna(row["depth"]) else int(row["depth"])
    runs = [
        r
        for r in results
        if r["model"] == model and r["activation"] == row["activation"] and r["status"] == "ok"
        if depth_of(r) == want_depth
        if pd.isna(rate) or _same_rate(r.get("learning_rate"), rate)
        if r.get("test_accuracy") is not None and math.isfinite(r["test_accuracy"])
    ]
    return max(runs, key=lambda r: (r["test_accuracy"], -r["seed"]), default=None)


def _same_rate(value, rate: float) -> bool:
    return value is not None and math.isfinite(value) and math.isclose(value, rate)


def best_overall(results: list[dict], summary: pd.DataFrame) -> dict | None:
    """The best run of the (model, depth) whose best activation has the highest mean test
    accuracy (ties: the group ranked first): the network logged as an MLflow model. Its
    `tied_with` lists the activations of its group that cannot be told apart from it."""
    best = best_activations(summary)
    if best.empty:
        return None
    top = best.sort_values("mean", ascending=False, kind="stable").iloc[0]
    depth = None if pd.isna(top["depth"]) else int(top["depth"])
    run = best_run(results, summary, top["model"], depth)
    if run is None:
        return None
    tied = group_rows(tied_best(summary), top["model"], depth)
    return {**run, "tied_with": [a for a in tied["activation"] if a != top["activation"]]}


def at_chosen_rates(results: list[dict], summary: pd.DataFrame) -> list[dict]:
    """The results of each (model, depth, activation) at the learning rate it is ranked at."""
    chosen = {
        (m, None if pd.isna(d) else int(d), a): lr
        for m, d, a, lr in zip(
            summary["model"],
            summary["depth"],
            summary["activation"],
            summary["learning_rate"],
            strict=True,
        )
    }
    out = []
    for r in results:
        key = (r["model"], depth_of(r), r["activation"])
        if key not in chosen:
            continue
        rate = chosen[key]
        if pd.isna(rate) or _same_rate(r.get("learning_rate"), rate):
            out.append(r)
    return out


def choices_record(summary: pd.DataFrame, table: pd.DataFrame) -> dict:
    """What the parent run records of the choices made (`choices.json`): the learning rate each
    activation is ranked at, and per (model, depth) its seeds and whether its best and runner-up
    were told apart."""

    def plain(value):
        return None if pd.isna(value) else value

    rates = summary[["model", "depth", "activation", "learning_rate", "val_accuracy", "verdict"]]
    return {
        "learning_rates": [
            {k: plain(v) for k, v in row.items()} for row in rates.to_dict(orient="records")
        ],
        "seeds": [
            {
                "model": s.model,
                "depth": s.depth,
                "seeds": list(s.seeds),
                "separated": s.separated,
                "reason": s.reason,
            }
            for s in separation(summary, table)
        ],
    }


def learning_rate_table(table: pd.DataFrame) -> pd.DataFrame:
    """`choose_learning_rates` for a report: with `depth` as Int64 (NA when not recorded)."""
    rates = choose_learning_rates(table)
    rates["depth"] = rates["depth"].where(rates["depth"] != NO_DEPTH).astype("Int64")
    return rates
