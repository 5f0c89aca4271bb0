"""Seed statistics: summaries with t confidence intervals, two-condition tests, Holm-Bonferroni.

Every test statistic and p-value comes from ``scipy.stats``: Welch's t-test (``ttest_ind(equal_var=False)``)
and Mann-Whitney U for independent seeds; the paired t-test (``ttest_rel``) and the Wilcoxon signed-rank
test for seeds paired by design. The confidence interval of a difference is scipy's for the same t-test
(always two-sided, whatever the test's alternative). Written here: the effect sizes (Hedges' g for
independent samples, Cohen's d_z for pairs) and Holm's step-down correction, each a few lines of
arithmetic with a test against a hand-checked case.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN = float("nan")


@dataclass(frozen=True)
class Summary:
    """Mean, standard deviation and 95% t interval of one condition's seeds."""

    n: int
    mean: float
    std: float
    ci_lo: float
    ci_hi: float


def summarize(values: np.ndarray, confidence: float = 0.95) -> Summary:
    """Summary of the finite values (std and CI are NaN below two values).

    Args:
        values: one value per seed.
        confidence: coverage of the interval.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Summary(0, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    if n < 2:
        return Summary(n, mean, NAN, NAN, NAN)
    std = float(x.std(ddof=1))
    if std == 0.0:
        return Summary(n, mean, 0.0, mean, mean)
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(x))
    return Summary(n, mean, std, float(lo), float(hi))


@dataclass(frozen=True)
class PairTest:
    """Condition a against condition b: difference (a - b) with its CI, effect size and p-values."""

    diff: float
    diff_ci_lo: float
    diff_ci_hi: float
    effect_size: float
    p_t: float         # Welch's t (independent) or paired t
    p_rank: float      # Mann-Whitney U (independent) or Wilcoxon signed-rank (paired)
    paired: bool
    note: str = ""


def _quiet(fn, *args, **kwargs):
    """Call a scipy test; degenerate inputs (zero variance, all ties) give NaN instead of warnings/errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except ValueError:
            return None


def _p(result) -> float:
    if result is None:
        return NAN
    p = float(result.pvalue)
    return p if math.isfinite(p) else NAN


def _ci(result, confidence: float) -> tuple[float, float]:
    if result is None:
        return NAN, NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = result.confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference with the pooled SD and the small-sample correction J."""
    na, nb = len(a), len(b)
    pooled = math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))
    if pooled == 0.0:
        return NAN
    return float((np.mean(a) - np.mean(b)) / pooled * (1.0 - 3.0 / (4.0 * (na + nb) - 9.0)))


def compare_pair(a: np.ndarray, b: np.ndarray, paired: bool = False, alternative: str = "two-sided",
                 confidence: float = 0.95) -> PairTest:
    """Test condition a against b (``alternative``: ``greater`` means a > b).

    Args:
        a: one value per seed of condition a (for ``paired``: aligned with ``b`` by seed).
        b: the same for condition b.
        paired: seeds are paired by design: paired t-test and Wilcoxon signed-rank.
        alternative: two-sided, greater or less (scipy's meaning).
        confidence: coverage of the difference's interval.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
    else:
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if min(len(a), len(b)) < 2:
        return PairTest(NAN, NAN, NAN, NAN, NAN, NAN, paired, f"fewer than 2 seeds (n={len(a)}, {len(b)}): no test")
    diff = float(np.mean(a) - np.mean(b))
    if paired:
        d = a - b
        sd = float(np.std(d, ddof=1))
        lo, hi = _ci(_quiet(stats.ttest_rel, a, b), confidence)
        p_t = _p(_quiet(stats.ttest_rel, a, b, alternative=alternative))
        p_rank = _p(_quiet(stats.wilcoxon, a, b, alternative=alternative))
        effect = float(np.mean(d) / sd) if sd > 0 else NAN
    else:
        lo, hi = _ci(_quiet(stats.ttest_ind, a, b, equal_var=False), confidence)
        p_t = _p(_quiet(stats.ttest_ind, a, b, equal_var=False, alternative=alternative))
        p_rank = _p(_quiet(stats.mannwhitneyu, a, b, alternative=alternative))
        effect = hedges_g(a, b)
    note = "no variance: t-test undefined" if math.isnan(p_t) else ""
    return PairTest(diff, lo, hi, effect, p_t, p_rank, paired, note)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values; NaN entries stay NaN and are not counted in the family.

    Args:
        pvalues: the raw p-values of the family.
    """
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    out = [NAN] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
