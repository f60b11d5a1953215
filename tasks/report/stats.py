"""Statistics: how good an activation is, and whether two can be told apart.

Pure functions on plain numbers and arrays (no files, no MLflow), so they are tested on
hand-computed values.

- `summarize`: mean, sample standard deviation (n - 1) and the Student-t confidence interval of the
  mean at CONFIDENCE, mean ± t(1 - ALPHA/2, n - 1) · s / √n. With one value there is no spread to
  estimate: the std and interval are NaN, never 0.
- `paired_test`: the paired t-test (scipy.stats.ttest_rel, two-sided) of an activation against the
  baseline on the seeds both finished soundly. Pairing by seed removes what a seed does to every
  activation alike (the shuffling order). Fewer than two pairs, or differences with no spread,
  give no p-value and say why instead.
- `mcnemar`: McNemar's exact test on paired test predictions. Every network is scored on the same
  test images, so two can be compared image by image, even with one seed: only the images one got
  right and the other wrong (the discordant pairs) carry evidence, and under "equally accurate"
  each is as likely to go either way: a two-sided exact binomial test with p = 1/2
  (scipy.stats.binomtest). With several seeds it is pooled: an image counts for the network pair
  that got it right on more of the shared seeds (with one seed this is McNemar's test exactly).
- `holm`: Holm's step-down correction of p-values for the number of comparisons: the k-th
  smallest of m p-values is multiplied by m - k + 1, then made non-decreasing. It controls the
  chance of calling any tie a difference at ALPHA, whatever the comparisons' dependence.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # a p-value below this counts as a difference beyond noise
PAIRED_TEST = "paired t-test"
MCNEMAR = "McNemar"  # exact, on paired test predictions (pooled over shared seeds)
# Differences within this of each other count as equal: accuracies are k / n_test, and their
# float differences can disagree in the last bit, which would make t huge and p spuriously ~0.
TIE = 1e-9


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof = 1); NaN for n < 2
    ci_low: float  # t interval of the mean at CONFIDENCE; NaN for n < 2
    ci_high: float


def summarize(values: Sequence[float]) -> Summary:
    """Mean, std and t confidence interval (at CONFIDENCE) of finite values (NaN left out)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    from scipy import stats  # here, not at the top: `actlab runs` often needs no interval

    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """An activation against the baseline over the seeds both finished soundly."""

    test: str
    n_pairs: int
    mean_difference: float  # activation - baseline, in accuracy; NaN without pairs
    statistic: float  # t; NaN when undefined
    p_value: float | None  # None when the test cannot be computed: see `note`
    note: str  # why there is no p-value, or ""
    # McNemar: images the first got right more often than the second, and the other way round
    discordant: tuple[int, int] = (0, 0)

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def paired_test(values: dict[int, float], baseline: dict[int, float]) -> Comparison:
    """Paired t-test of `values` against `baseline`, both keyed by seed (two-sided).

    Only seeds present and finite in both are paired. With fewer than 2 pairs, or with the same
    difference on every seed (zero variance: t is infinite or 0/0), there is no p-value and `note`
    says so in words a reader can act on.
    """
    seeds = sorted(
        s for s in values.keys() & baseline.keys() if _finite(values[s]) and _finite(baseline[s])
    )
    a = np.asarray([values[s] for s in seeds], dtype=float)
    b = np.asarray([baseline[s] for s in seeds], dtype=float)
    n = len(seeds)
    if n == 0:
        return Comparison(PAIRED_TEST, 0, math.nan, math.nan, None, "no seed where both are sound")
    diff = a - b
    mean_diff = float(diff.mean())
    if n < 2:
        return Comparison(
            PAIRED_TEST, n, mean_diff, math.nan, None, "one seed: run more seeds for a test"
        )
    if np.ptp(diff) <= TIE:  # float noise aside, the same difference on every seed
        note = (
            "identical on every seed"
            if abs(mean_diff) <= TIE
            else f"the same difference on all {n} seeds (no spread: the t-test is undefined)"
        )
        return Comparison(PAIRED_TEST, n, mean_diff, math.nan, None, note)
    from scipy import stats

    result = stats.ttest_rel(a, b)
    return Comparison(PAIRED_TEST, n, mean_diff, float(result.statistic), float(result.pvalue), "")


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def mcnemar(first: np.ndarray, second: np.ndarray) -> Comparison:
    """McNemar's exact test of two sets of networks on the same test images, two-sided.

    `first` and `second` are (seeds, images) booleans, True where that seed's network classified
    that image right; row k of each comes from the same seed. An image counts as discordant when
    one side is right on more seeds than the other; p = the exact binomial test of the discordant
    counts against 1/2. No discordant image at all: p = 1 (nothing tells them apart).
    """
    a, b = np.atleast_2d(np.asarray(first, bool)), np.atleast_2d(np.asarray(second, bool))
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired predictions need one shape, got {a.shape} and {b.shape}")
    n = a.shape[0]
    score = a.sum(axis=0, dtype=np.int64) - b.sum(axis=0, dtype=np.int64)
    wins, losses = int((score > 0).sum()), int((score < 0).sum())
    mean_diff = float(score.sum() / score.size / n)
    if wins + losses == 0:
        return Comparison(MCNEMAR, n, mean_diff, 0.0, 1.0, "", (0, 0))
    from scipy import stats

    p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue)
    return Comparison(MCNEMAR, n, mean_diff, float(wins), min(p, 1.0), "", (wins, losses))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given (NaN stays NaN and does not count)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if _finite(p))
    m = len(indexed)
    out = [math.nan] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out
