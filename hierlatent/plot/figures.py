"""The paper's line figures (docs/research.md#figures): loss (Fig. 2) and induction (Fig. 3, 3b); heatmaps in `heatmaps`.

Every function takes the panel list from `panels` and `Options`, and returns ``(figure, number of panels
that have data)``; the figure carries ``fig.tidy`` (the rows of its CSV, `hierlatent.plot.tidy`). A panel
with several runs (the seeds of a sweep condition) plots their mean with a 95% confidence band.
"""

from __future__ import annotations

import numpy as np

from hierlatent.plot.data import ema, loss_curves, scalar_series, vector_series
from hierlatent.plot.heatmaps import fig_function_vectors, fig_hydra, has_function_vectors, has_hydra, has_hydra_k  # noqa: F401
from hierlatent.plot.panels import Options, Panel, band_title, caption, no_data, panels, ylabel  # noqa: F401
from hierlatent.plot.stats import band
from hierlatent.plot.style import empty_panel, new_figure, step_axis
from hierlatent.plot.tidy import Rows

# Reference keys that are not a loss of the whole token stream (an error bar, a subset of positions).
_NOT_A_LOSS = ("_stderr", "_words", "_eos", "_query", "_entropy")
# The reference the gap panel subtracts: the plateau a model must get below (PCFG), else the optimum.
GAP_REFERENCES = ("role_unigram", "bayes_optimal", "uniform")


def plotted_references(panel: Panel) -> dict[str, float]:
    """Reference losses drawn as lines: mean over the panel's runs, keys that are whole-stream losses."""
    keys = sorted({k for r in panel.runs for k in r.reference_losses if not k.endswith(_NOT_A_LOSS)})
    return {k: float(np.mean([r.reference_losses[k] for r in panel.runs if k in r.reference_losses])) for k in keys}


def gap_reference(refs: dict[str, float]) -> str | None:
    """The reference of the "loss minus reference" panel (first of `GAP_REFERENCES`, else the lowest)."""
    return next((k for k in GAP_REFERENCES if k in refs), min(refs, key=refs.get) if refs else None)


def _curves(panel: Panel, smooth: float) -> dict:
    """key -> Band of the loss curves over the panel's runs (train smoothed per run before averaging)."""
    per_key: dict[str, list] = {}
    for run in panel.runs:
        for key, (steps, values) in loss_curves(run).items():
            per_key.setdefault("train" if key == "loss" else key, []).append((steps, ema(values, smooth) if key != "val" else values))
    return {k: band(v) for k, v in per_key.items()}


def _line(ax, b, color: str, label: str, marker: bool) -> None:
    """Mean line, and its 95% band where there are >= 2 runs."""
    style = {"marker": "o", "markersize": 2.5} if marker else {}
    ax.plot(b.steps, b.mean, color=color, label=label, **style)
    if np.isfinite(b.low).any():
        ax.fill_between(b.steps, b.low, b.high, color=color, alpha=0.2, lw=0)


def _loss_grid(n: int, opts: Options):
    """Two rows per panel row: loss on top, loss minus reference below (shorter)."""
    from matplotlib.figure import Figure

    from hierlatent.plot.style import PANEL_HEIGHT_IN, SINGLE_COLUMN_IN

    ncols = max(1, min(n, opts.max_columns))
    nrows = -(-n // ncols)
    width = min(opts.width, max(SINGLE_COLUMN_IN, opts.width * ncols / opts.max_columns))
    fig = Figure(figsize=(width, PANEL_HEIGHT_IN * 1.6 * nrows), layout="constrained")
    grid = fig.subplots(2 * nrows, ncols, squeeze=False, height_ratios=[1.0, 0.6] * nrows)
    tops = [grid[2 * (i // ncols), i % ncols] for i in range(n)]
    bottoms = [grid[2 * (i // ncols) + 1, i % ncols] for i in range(n)]
    for ax in grid.ravel():
        if not any(ax is a for a in tops + bottoms):
            ax.set_visible(False)
    return fig, tops, bottoms


def _gap_panel(ax, panel: Panel, curves: dict, ref: str, value: float, opts: Options, rows: Rows) -> None:
    """Loss minus the reference, zoomed on the second half of training where the gap is small."""
    colors, tail = {"train": "C0", "val": "C1"}, []
    for key, b in curves.items():
        shifted = type(b)(b.steps, b.mean - value, b.low - value, b.high - value, b.n)
        _line(ax, shifted, colors.get(key, "C2"), key, key == "val" or len(b.steps) < 20)
        rows.add_curve(panel.title, f"loss - {ref}", key, b.steps, shifted.mean, shifted.low, shifted.high, b.n)
        late = b.steps >= np.median(b.steps)
        tail += [shifted.mean[late], shifted.low[late], shifted.high[late]]
    ax.axhline(0.0, ls="--", lw=0.8, color="0.3")
    finite = np.concatenate(tail + [np.zeros(1)])
    finite = finite[np.isfinite(finite)]
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.15 * (hi - lo) or 0.01
    ax.set_ylim(lo - pad, hi + pad)
    step_axis(ax, np.concatenate([b.steps for b in curves.values()]), opts.xscale)
    ylabel(ax, f"loss − {ref}\n(nats/token)")


def fig_loss(plist: list[Panel], opts: Options):
    """Fig. 2: train/val loss vs step (seed mean and 95% band), reference losses as dashed lines, and
    below each panel the loss minus its plateau/optimum reference, zoomed on the second half of training."""
    fig, tops, bottoms = _loss_grid(len(plist), opts)
    fig.tidy, filled = Rows(), 0
    for ax, gap_ax, panel in zip(tops, bottoms, plist):
        curves = {k: b for k, b in _curves(panel, opts.smooth).items() if len(b.steps)}
        if not curves:
            gap_ax.set_visible(False)
            if panel.source is not None and panel.source.kind == "olmo":
                empty_panel(ax, panel.title, "no OLMo loss given\n(--olmo_loss_csv step,loss)")
            elif panel.source is not None:
                empty_panel(ax, panel.title, f"no loss logged in\n{panel.source.path}")
            else:
                empty_panel(ax, panel.title, panel.missing)
            continue
        filled += 1
        for key, b in curves.items():
            _line(ax, b, {"train": "C0", "val": "C1"}.get(key, "C2"), key, key == "val" or len(b.steps) < 20)
            fig.tidy.add_curve(panel.title, "loss", key, b.steps, b.mean, b.low, b.high, b.n)
        refs = plotted_references(panel)
        for i, (ref, value) in enumerate(refs.items()):
            ax.axhline(value, ls="--", lw=0.8, color=f"0.{2 + 2 * (i % 4)}", label=ref)
            fig.tidy.add(panel.title, "reference loss", value, series=ref, n=panel.seeds)
        step_axis(ax, np.concatenate([b.steps for b in curves.values()]), opts.xscale)
        ax.set_title(band_title(panel))
        ylabel(ax, "loss (nats/token)")
        ax.legend(loc="best")
        ref = gap_reference(refs)
        if ref is None:
            gap_ax.set_visible(False)
        else:
            _gap_panel(gap_ax, panel, curves, ref, refs[ref], opts, fig.tidy)
    text = "Loss in nats/token (natural log). Lower row: loss minus the reference named on its axis (role_unigram: the best loss without inferring the document latent; bayes_optimal: the best possible), so a curve below 0 is below that plateau."
    if any(p.seeds > 1 for p in plist):
        text += " Lines: mean over seeds; bands: 95% t-interval over seeds."
    caption(fig, text)
    return fig, filled


def fig_k_order(plist: list[Panel], opts: Options):
    """Fig. 3: the k-order induction score as one line (mean over k) with the spread over k as a band
    (single run) or the 95% band over seeds (sweep; the k-range then as dotted lines)."""
    fig, axes = new_figure(len(plist), opts.width, opts.max_columns)
    fig.tidy, filled, k_max = Rows(), 0, 0
    for ax, panel in zip(axes, plist):
        per_run = [vector_series(r, ("induction", "k_order")) for r in panel.runs]
        per_run = [(s, v) for s, v in per_run if len(s)]
        if not per_run:
            no_data(ax, panel, "induction probe")
            continue
        filled += 1
        k_max = max(k_max, max(v.shape[1] for _, v in per_run))
        by_k = band(per_run)  # [S, K] seed mean per k
        k_mean = band([(s, np.nanmean(v, 1)) for s, v in per_run])  # seed band of the mean over k
        k_lo, k_hi = np.nanmin(by_k.mean, 1), np.nanmax(by_k.mean, 1)
        marker = {"marker": "o", "markersize": 2} if len(k_mean.steps) < 20 else {}
        ax.plot(k_mean.steps, k_mean.mean, color="C0", label="mean over k", **marker)
        if len(per_run) > 1:
            ax.fill_between(k_mean.steps, k_mean.low, k_mean.high, color="C0", alpha=0.25, lw=0, label="95% CI over seeds")
            ax.plot(by_k.steps, k_lo, ":", color="C0", lw=0.7, label="min/max over k")
            ax.plot(by_k.steps, k_hi, ":", color="C0", lw=0.7)
            fig.tidy.add_curve(panel.title, "k-order score", "mean over k", k_mean.steps, k_mean.mean, k_mean.low, k_mean.high, k_mean.n)
        else:
            ax.fill_between(k_mean.steps, k_lo, k_hi, color="C0", alpha=0.25, lw=0, label="min–max over k")
            fig.tidy.add_curve(panel.title, "k-order score", "mean over k", k_mean.steps, k_mean.mean, k_lo, k_hi, 1)
        fig.tidy.add_curve(panel.title, "k-order score", "min over k", by_k.steps, k_lo)
        fig.tidy.add_curve(panel.title, "k-order score", "max over k", by_k.steps, k_hi)
        step_axis(ax, k_mean.steps, opts.xscale)
        ax.set_ylim(0, 1)
        ax.set_title(band_title(panel))
        ylabel(ax, "k-order induction score (0–1)")
        ax.legend(loc="best")
    ks = f"k = 1…{k_max}" if k_max else "every k"
    caption(fig, f"The paper's k-order score averages the attention from a token of the second copy to the same token in the first copy (A[n+k+i, k+i]): a duplicate-token score, in which k only trims which positions are averaged. The curves for {ks} therefore coincide; one line shows their mean and the band their range over k" + (" (with several seeds: the band is the 95% t-interval over seeds and the dotted lines the range over k)." if any(p.seeds > 1 for p in plist) else "."))
    return fig, filled


def fig_standard_induction(plist: list[Panel], opts: Options):
    """Fig. 3b: standard (Olsson) induction, duplicate-token and previous-token scores vs step."""
    fig, axes = new_figure(len(plist), opts.width, opts.max_columns)
    keys = (("standard", "standard induction", "C0"), ("duplicate", "duplicate token", "C2"), ("previous", "previous token", "C3"))
    fig.tidy, filled, legend_done = Rows(), 0, False
    for ax, panel in zip(axes, plist):
        bands = {k: band([scalar_series(r, ("induction", k)) for r in panel.runs]) for k, _, _ in keys}
        if not any(len(b.steps) for b in bands.values()):
            no_data(ax, panel, "induction probe")
            continue
        filled += 1
        for key, label, color in keys:
            b = bands[key]
            if len(b.steps):
                _line(ax, b, color, label, len(b.steps) < 20)
                fig.tidy.add_curve(panel.title, "score", label, b.steps, b.mean, b.low, b.high, b.n)
        step_axis(ax, np.concatenate([b.steps for b in bands.values()]), opts.xscale)
        ax.set_ylim(0, 1)
        ax.set_title(band_title(panel))
        ylabel(ax, "score (0–1), max over heads")
        if not legend_done:
            ax.legend(loc="best")
            legend_done = True
    if any(p.seeds > 1 for p in plist):
        caption(fig, "Lines: mean over seeds; bands: 95% t-interval over seeds. Each score is the maximum over (layer, head).")
    return fig, filled
