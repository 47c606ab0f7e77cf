"""The statistics of a comparison between arms: a mean with its t-interval, a paired or Welch difference, Holm.

    python -c "from gptlab.analysis.stats import summarize; print(summarize([5.61, 5.64, 5.59]))"
    python -c "from gptlab.analysis.stats import difference; print(difference([5.5, 5.6, 5.4], [5.6, 5.7, 5.6]))"

Arms that share seeds share the initial weights and the data order, so their difference is taken per seed and tested
with the paired t-test (scipy.stats.ttest_rel); otherwise with Welch's (ttest_ind, equal_var=False). Several
comparisons in one report are Holm-adjusted. The smallest difference a test could detect is the one it finds at
power 0.8 and alpha 0.05: (t_0.975 + t_0.8) times the standard error, on the test's degrees of freedom.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

LEVEL = 0.95  # every interval in a report
POWER = 0.8  # for the smallest detectable difference


def plain(result) -> dict:
    """A result as JSON takes it: NaN (nothing could be computed) as None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(result).items()}


@dataclass(frozen=True)
class Summary:
    """n values: their mean, sample standard deviation and the mean's LEVEL t-interval (NaN with n < 2)."""
    n: int
    mean: float
    sd: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return plain(self)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) (per seed when paired), its LEVEL interval, the two-sided p-value and the test's name."""
    diff: float
    low: float
    high: float
    p: float
    test: str
    df: float
    n_a: int
    n_b: int
    detectable: float  # the smallest |difference| this test detects at POWER and alpha = 1 - LEVEL

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict:
        return plain(self)


def _t(q: float, df: float) -> float:
    from scipy.stats import t
    return float(t.ppf(q, df))


def summarize(values) -> Summary:
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = float(v.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = float(v.std(ddof=1))
    half = _t(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


def _result(diff: float, se: float, df: float, p: float, test: str, n_a: int, n_b: int) -> Difference:
    if not (df > 0 and math.isfinite(se)):
        return Difference(diff, math.nan, math.nan, math.nan, test, df, n_a, n_b, math.nan)
    half = _t(0.5 + LEVEL / 2, df) * se
    detectable = (_t(0.5 + LEVEL / 2, df) + _t(POWER, df)) * se
    return Difference(diff, diff - half, diff + half, p, test, df, n_a, n_b, detectable)


def difference(a, b, paired: bool = False) -> Difference:
    """mean(a) - mean(b) tested: paired t over matched pairs (a[i] with b[i]), else Welch's t. With fewer than two
    values a side (or two pairs), the interval, p and detectable difference are NaN: nothing can be tested."""
    from scipy import stats
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        if len(a) != len(b):
            raise ValueError(f"a paired test needs matched values, got {len(a)} and {len(b)}")
        d = a - b
        n = len(d)
        if n < 2:
            return _result(float(d.mean()), math.nan, 0, math.nan, "paired t", n, n)
        se = float(d.std(ddof=1)) / math.sqrt(n)
        p = float(stats.ttest_rel(a, b).pvalue) if se > 0 else (1.0 if d.mean() == 0 else 0.0)
        return _result(float(d.mean()), se, n - 1, p, "paired t", n, n)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return _result(diff, math.nan, 0, math.nan, "Welch's t", len(a), len(b))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return _result(diff, 0.0, len(a) + len(b) - 2, 1.0 if diff == 0 else 0.0, "Welch's t", len(a), len(b))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return _result(diff, se, float(df), p, "Welch's t", len(a), len(b))


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the given order: sorted ascending, p_(i) * (m - i + 1) (i from 1), a
    running maximum, capped at 1. NaN entries (untestable comparisons) stay NaN and do not count towards m."""
    p = [float(x) for x in pvalues]
    live = sorted((v, i) for i, v in enumerate(p) if math.isfinite(v))
    m, out, running = len(live), [math.nan] * len(p), 0.0
    for rank, (v, i) in enumerate(live):
        running = max(running, min(1.0, v * (m - rank)))
        out[i] = running
    return out
