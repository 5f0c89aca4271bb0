"""Seed statistics for the figures: mean and 95% t-interval over runs, aligned on their common steps.

Pure numpy/scipy: `band` takes one ``(steps, values)`` pair per run (values ``[S, ...]``, any trailing
shape) and returns the per-step mean, the interval and the number of finite values behind each cell.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass
class Band:
    """Mean over runs with its 95% confidence interval (NaN where fewer than 2 runs have a value).

    Args:
        steps: common steps [S].
        mean: mean over runs [S, ...].
        low: lower CI bound [S, ...].
        high: upper CI bound [S, ...].
        n: finite values per cell [S, ...].
    """

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def t_halfwidth(std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half-width of the two-sided 95% t-interval of a mean: t_{n-1} · std / sqrt(n); NaN where n < 2.

    Args:
        std: sample standard deviation (ddof = 1); from a standard error se, pass se · sqrt(n).
        n: sample counts, same shape.
    """
    from scipy import stats

    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = stats.t.ppf(0.5 + CONFIDENCE / 2, np.where(n >= 2, n - 1, np.nan))
        return np.where(n >= 2, q * np.asarray(std) / np.sqrt(n), np.nan)


def band(series: list[tuple[np.ndarray, np.ndarray]]) -> Band:
    """Mean and 95% CI over runs at the steps every run has.

    Args:
        series: one (steps [S_r], values [S_r, ...]) per run; runs without steps are ignored.
    """
    series = [(np.asarray(s), np.asarray(v, dtype=np.float64)) for s, v in series if len(s)]
    if not series:
        return Band(*(np.zeros(0) for _ in range(5)))
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in series)))
    trailing = np.broadcast_shapes(*(v.shape[1:] for _, v in series))
    stack = np.full((len(series), len(common), *trailing), np.nan)  # [R, S, ...]
    for r, (s, v) in enumerate(series):
        index = {int(step): i for i, step in enumerate(s.tolist())}
        rows = v[[index[c] for c in common]]
        stack[(r, slice(None), *(slice(0, d) for d in rows.shape[1:]))] = rows
    n = np.isfinite(stack).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": such cells stay NaN
        mean = np.where(n > 0, np.nanmean(stack, 0), np.nan)
        std = np.where(n >= 2, np.nanstd(stack, 0, ddof=1), np.nan)
    half = t_halfwidth(std, n)
    return Band(np.array(common, dtype=np.int64), mean, mean - half, mean + half, n)

