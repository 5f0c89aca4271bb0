"""Write a comparison: ``report.csv`` (every row), ``summary.csv`` (per condition), ``report.md``, ``effects.png``.

Every file is written atomically. ``report.md`` is what a reader pastes into a paper: the design (seeds per
condition, paired or not, alternative, family size and correction), the notes (dropped steps, missing
metrics, conditions without a test), the final-checkpoint table and every row significant after Holm.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from hierlatent.compare.table import COLUMNS
from hierlatent.io import atomic_write_bytes, atomic_write_text


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and (abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3)):
        return f"{x:.2e}"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def to_csv(rows: list[dict], columns: tuple[str, ...] | list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return buf.getvalue()


def _ci(lo: float, hi: float) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _table(rows: list[dict]) -> list[str]:
    out = ["| metric | step | a: mean [95% CI] | b: mean [95% CI] | a − b [95% CI] | effect | p | p (Holm) | n a/b |",
           "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(
            f"| `{r['metric']}` | {r['step']} | {r['a']}: {_fmt(r['mean_a'])} {_ci(r['ci_a_lo'], r['ci_a_hi'])} |"
            f" {r['b']}: {_fmt(r['mean_b'])} {_ci(r['ci_b_lo'], r['ci_b_hi'])} | {_fmt(r['diff'])}"
            f" {_ci(r['diff_ci_lo'], r['diff_ci_hi'])} | {_fmt(r['effect_size'], 3)} | {_fmt(r['p_primary'], 3)} |"
            f" {_fmt(r['p_holm'], 3)}{' *' if r['p_holm'] < 0.05 else ''} | {r['n_a']}/{r['n_b']} |")
    return out


def markdown(rows: list[dict], groups: dict[str, list], notes: list[str], paired: bool, alternative: str) -> str:
    """The report as Markdown."""
    seeds = ", ".join(f"{c}: {len(r)} seed(s)" for c, r in groups.items())
    primary = "paired t-test (Wilcoxon signed-rank alongside)" if paired else "Welch's t-test (Mann–Whitney U alongside)"
    tested = [r for r in rows if not math.isnan(r["p_primary"])]
    lines = ["# Comparison report", "",
             f"Conditions: {seeds}. Seeds paired by design: {'yes' if paired else 'no'}. Test: {primary},"
             f" alternative {alternative} (a vs b). Family: {len(tested)} tests, Holm–Bonferroni over all of them"
             " (`p_holm`; `p_holm_rank` for the rank test). Effect size: "
             + ("Cohen's d_z of the paired differences." if paired else "Hedges' g (pooled SD)."),
             "", "95% confidence intervals are t intervals over seeds; the difference's is the t-test's own.", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    final = {}
    for r in rows:
        key = (r["metric"], r["a"], r["b"])
        if key not in final or r["step"] > final[key]["step"]:
            final[key] = r
    lines += ["## Final checkpoint", ""] + _table(list(final.values())) + [""]
    significant = [r for r in rows if r["p_holm"] < 0.05]
    lines += ["## Significant after correction (p_holm < 0.05, every step)", ""]
    lines += _table(significant) if significant else ["None."]
    lines += ["", "Every row (all steps) is in `report.csv`; per-condition summaries in `summary.csv`.", ""]
    return "\n".join(lines)


def effects_figure(rows: list[dict], path: Path, max_rows: int = 40) -> None:
    """Final-step standardised differences (Hedges' g, or d_z for paired seeds) with 95% CIs; Holm-significant
    rows marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    final: dict = {}
    for r in rows:
        key = (r["metric"], r["a"], r["b"])
        if key not in final or r["step"] > final[key]["step"]:
            final[key] = r
    items = [r for r in final.values() if not math.isnan(r["effect_size"]) and r["diff"] not in (0.0,)]
    items = sorted(items, key=lambda r: -abs(r["effect_size"]))[:max_rows][::-1]
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.28 * max(1, len(items))))
    for y, r in enumerate(items):
        scale = r["effect_size"] / r["diff"]  # 1 / SD (with g's small-sample factor): CI in the same units
        lo, hi = sorted((r["diff_ci_lo"] * scale, r["diff_ci_hi"] * scale))
        colour = "tab:red" if r["p_holm"] < 0.05 else "tab:grey"
        ax.errorbar(r["effect_size"], y, xerr=[[r["effect_size"] - lo], [hi - r["effect_size"]]], fmt="o",
                    color=colour, capsize=2, ms=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(items)), [f"{r['metric']} ({r['a']}−{r['b']}, step {r['step']})" for r in items], fontsize=7)
    paired = any(r["effect_kind"] == "cohen_dz" for r in items)
    unit = "SDs of the paired differences (Cohen's d_z)" if paired else "pooled SDs (Hedges' g)"
    ax.set_xlabel(f"difference a − b in {unit}, 95% CI", fontsize=8)
    ax.set_title("Final-checkpoint effects (red: significant after Holm)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(out: Path, rows: list[dict], summary: list[dict], groups: dict, notes: list[str], paired: bool,
                 alternative: str) -> list[Path]:
    """Write every output file into ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    files = {out / "report.csv": to_csv(rows, COLUMNS),
             out / "summary.csv": to_csv(summary, ("metric", "step", "condition", "n", "mean", "std", "ci_lo", "ci_hi")),
             out / "report.md": markdown(rows, groups, notes, paired, alternative)}
    for path, text in files.items():
        atomic_write_text(path, text)
    effects_figure(rows, out / "effects.png")
    return [*files, out / "effects.png"]
