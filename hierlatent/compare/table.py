"""The comparison table: one row per (metric, step, pair of conditions), Holm-corrected over the whole family.

Steps: a condition's steps for a metric are those any of its runs logged; a pair is compared at the steps
both conditions have (the others are listed as dropped). With ``paired``, seed s of a is matched with
seed s of b and only seeds both have enter. The primary test is the paired t-test for paired seeds and
Welch's t-test otherwise; ``p_holm`` corrects the primary p-values over every row reported (the family),
``p_holm_rank`` the rank tests' (Wilcoxon or Mann-Whitney U) over the same family.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict

import numpy as np

from hierlatent.compare.collect import RunData
from hierlatent.compare.stats import compare_pair, holm, summarize

COLUMNS = ("metric", "step", "a", "b", "n_a", "n_b", "mean_a", "mean_b", "std_a", "std_b", "ci_a_lo", "ci_a_hi",
           "ci_b_lo", "ci_b_hi", "diff", "diff_ci_lo", "diff_ci_hi", "effect_size", "effect_kind", "primary",
           "alternative", "p_welch", "p_mwu", "p_paired_t", "p_wilcoxon", "p_primary", "p_holm", "p_holm_rank", "note")


def _values(runs: list[RunData], metric: str, step: int) -> dict:
    """seed (or run index) -> value for one condition."""
    return {(r.seed if r.seed is not None else i): r.metrics.get(metric, {}).get(step, math.nan)
            for i, r in enumerate(runs)}


def _steps(runs: list[RunData], metric: str) -> set[int]:
    return {s for r in runs for s in r.metrics.get(metric, {})}


def _row(metric: str, step: int, a: str, b: str, va: dict, vb: dict, paired: bool, alternative: str) -> dict:
    xa, xb = np.array(list(va.values())), np.array(list(vb.values()))
    sa, sb = summarize(xa), summarize(xb)
    indep = compare_pair(xa, xb, paired=False, alternative=alternative)
    row = {"metric": metric, "step": step, "a": a, "b": b, "n_a": sa.n, "n_b": sb.n, "mean_a": sa.mean,
           "mean_b": sb.mean, "std_a": sa.std, "std_b": sb.std, "ci_a_lo": sa.ci_lo, "ci_a_hi": sa.ci_hi,
           "ci_b_lo": sb.ci_lo, "ci_b_hi": sb.ci_hi, "alternative": alternative,
           "p_welch": indep.p_t, "p_mwu": indep.p_rank, "p_paired_t": math.nan, "p_wilcoxon": math.nan}
    main = indep
    if paired:
        seeds = sorted(set(va) & set(vb))
        main = compare_pair(np.array([va[s] for s in seeds]), np.array([vb[s] for s in seeds]), True, alternative)
        row.update(p_paired_t=main.p_t, p_wilcoxon=main.p_rank)
    row.update(diff=main.diff, diff_ci_lo=main.diff_ci_lo, diff_ci_hi=main.diff_ci_hi, effect_size=main.effect_size,
               effect_kind="cohen_dz" if paired else "hedges_g", primary="paired_t" if paired else "welch",
               p_primary=main.p_t, note=main.note)
    return row


def build_table(groups: dict[str, list[RunData]], metrics: list[str], pairs: list[tuple[str, str]] | None = None,
                paired: bool = False, alternative: str = "two-sided", final_only: bool = False
                ) -> tuple[list[dict], list[dict], list[str]]:
    """(comparison rows, per-condition summary rows, notes) for every metric and common step.

    Args:
        groups: condition -> its runs.
        metrics: the metrics to report.
        pairs: (a, b) pairs to test; default every pair in the order the conditions are given.
        paired: match seeds across conditions (paired tests).
        alternative: two-sided, greater (a > b) or less.
        final_only: only the last common step of each metric.
    """
    pairs = pairs or list(itertools.combinations(groups, 2))
    rows, summary, notes = [], [], []
    dropped_notes: dict[tuple, list[str]] = {}
    for cond, runs in groups.items():
        if len(runs) < 2:
            notes.append(f"condition {cond} has {len(runs)} seed(s): no test can involve it (need >= 2)")
    for metric in metrics:
        for cond, runs in groups.items():
            missing = [r.path.name for r in runs if metric not in r.metrics]
            if missing and len(missing) < len(runs):
                notes.append(f"{metric}: missing from {cond} runs {', '.join(missing)}")
            for step in sorted(_steps(runs, metric)):
                s = summarize(np.array(list(_values(runs, metric, step).values())))
                summary.append({"metric": metric, "step": step, "condition": cond, **asdict(s)})
        for a, b in pairs:
            sa, sb = _steps(groups[a], metric), _steps(groups[b], metric)
            common = sorted(sa & sb)
            dropped = sorted((sa | sb) - set(common))
            if dropped:
                dropped_notes.setdefault((a, b, tuple(dropped)), []).append(metric)
            for step in common[-1:] if final_only else common:
                rows.append(_row(metric, step, a, b, _values(groups[a], metric, step),
                                 _values(groups[b], metric, step), paired, alternative))
    for (a, b, dropped), names in dropped_notes.items():
        which = names[0] if len(names) == 1 else f"{len(names)} metrics ({names[0]}, ...)"
        notes.append(f"{which}, {a} vs {b}: steps {list(dropped)} are not shared and were dropped"
                     " (runs of different lengths can be matched by checkpoint with --align index)")
    for column, source in (("p_holm", "p_primary"), ("p_holm_rank", "p_wilcoxon" if paired else "p_mwu")):
        for row, p in zip(rows, holm([r[source] for r in rows])):
            row[column] = p
    return rows, summary, notes
