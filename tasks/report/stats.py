"""Statistics over seeds: how good an activation is, and whether it beats the baseline.

Pure functions on plain numbers (no files, no MLflow), so they are tested on hand-computed values.

- `summarize`: mean, sample standard deviation (n - 1) and the Student-t confidence interval of the
  mean at CONFIDENCE, mean ± t(1 - ALPHA/2, n - 1) · s / √n. With one value there is no spread to
  estimate: the std and interval are NaN, never 0.
- `paired_test`: the paired t-test (scipy.stats.ttest_rel, two-sided) of an activation against the
  baseline on the seeds both finished soundly. Pairing by seed removes what a seed does to every
  activation alike (the shuffling order). Fewer than two pairs, or differences with no spread,
  give no p-value and say why instead.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # a p-value below this counts as a difference beyond noise
PAIRED_TEST = "paired t-test"
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
