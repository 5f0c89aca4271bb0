"""The paper's heatmaps: Hydra (Fig. 4, 4b) and function vectors (Fig. 5a), layer x step, seed means.

Fig. 4 shows McGrath et al.'s compensation (direct - total effect, ``hydra.mcgrath.compensation``) as the
Hydra figure proper, the headwise compensation (``hydra.headwise.compensation``, layer x head at the last
step) when measured, and the paper's Δ_l^k beside them. On a bias-free model the paper's Δ is degenerate:
zeroing decoder layer l-k's output zeroes the whole residual stream, every later layer maps 0 to 0, so
Δ_l^k = U(h_l)[g], the current token's logit-lens value at layer l, for every k. `degenerate` detects it
from the probe JSON (k = 1 and k = 2 equal) or the run's exported HF config (no biases) and the figure
says so. Grey cells (no value) and hatched cells (95% CI contains 0) get a legend entry.
"""

from __future__ import annotations

import json

import numpy as np

from hierlatent.plot.data import layer_matrix, step_edges
from hierlatent.plot.panels import UNDEFINED_GREY, Options, Panel, band_title, caption, no_data, undefined_legend, ylabel
from hierlatent.plot.sources import Source
from hierlatent.plot.stats import band, t_halfwidth
from hierlatent.plot.style import step_axis
from hierlatent.plot.tidy import Rows

MCGRATH = ("hydra", "mcgrath", "compensation")
HEADWISE = ("hydra", "headwise", "compensation")
FV = ("function_vectors", "improvement")
_BIAS_FREE_TYPES = ("llama", "olmo", "olmo2", "mistral")


def _matrix_band(panel: Panel, path: tuple[str, ...]):
    """Seed band of a layer x step matrix: Band with mean etc. shaped [S, L]."""
    return band([(s, m.T) for s, m in (layer_matrix(r, path) for r in panel.runs) if len(s)])


def degenerate(source: Source) -> str | None:
    """Why the paper's Δ is the logit-lens value on this run (None when it is not known to be).

    Args:
        source: the run.
    """
    s1, k1 = layer_matrix(source, ("hydra", "paper", "k1"))
    s2, k2 = layer_matrix(source, ("hydra", "paper", "k2"))
    common = sorted(set(s1.tolist()) & set(s2.tolist()))
    if common and k1.shape[0] == k2.shape[0]:
        a = k1[:, [s1.tolist().index(s) for s in common]][2:]
        b = k2[:, [s2.tolist().index(s) for s in common]][2:]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.any() and np.allclose(a[ok], b[ok], rtol=1e-5, atol=1e-6):
            return "k = 1 and k = 2 values are equal"
    for cfg in sorted(source.path.glob("hf/step-*/config.json"))[-1:]:
        c = json.loads(cfg.read_text())
        if c.get("model_type") in _BIAS_FREE_TYPES and not c.get("attention_bias") and not c.get("mlp_bias"):
            return f"{c['model_type']} without biases ({cfg.parent.name}/config.json)"
    return None


def _mesh(ax, steps, matrix, cmap, norm, opts: Options, hatch=None) -> None:
    """One layer x step heatmap (layer 0 on top); hatch marks cells where ``hatch`` [L, S] is True."""
    import matplotlib as mpl
    from matplotlib.patches import Rectangle

    step_axis(ax, steps, opts.xscale)
    x = step_edges(steps, ax.get_xscale() == "log")
    y = np.arange(matrix.shape[0] + 1) - 0.5
    ax.pcolormesh(x, y, np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, shading="flat")
    if len(steps) <= 8:  # few checkpoints: one tick per cell, at its step
        ax.set_xticks(steps)
    for layer, j in zip(*np.nonzero(hatch)) if hatch is not None else ():
        ax.add_patch(Rectangle((x[j], y[layer]), x[j + 1] - x[j], 1.0, fill=False, hatch="////", lw=0, edgecolor="0.25"))
    ax.set_ylim(y[-1], y[0])
    ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    ylabel(ax, "layer")


def _norm(arrays: list[np.ndarray], diverging: bool):
    import matplotlib as mpl

    finite = np.concatenate([a[np.isfinite(a)] for a in arrays] + [np.zeros(0)])
    hi = float(np.abs(finite).max()) if finite.size else 1.0
    hi = hi if hi > 0 else 1.0
    cmap = mpl.colormaps["RdBu_r" if diverging else "magma"].with_extremes(bad=UNDEFINED_GREY)
    return mpl.colors.Normalize(-hi if diverging else 0.0, hi), cmap


def _rows_for_fig4(plist: list[Panel], k: int) -> list[tuple[str, tuple, str]]:
    """(kind, path, row title) of the heatmap rows this figure has data for."""
    rows = []
    if k == 1 and any(_matrix_band(p, MCGRATH).steps.size for p in plist):
        rows.append(("mcgrath", MCGRATH, "McGrath compensation (direct − total effect)"))
    if k == 1 and any(_headwise(p) is not None for p in plist):
        rows.append(("headwise", HEADWISE, "headwise McGrath compensation, last step"))
    if any(_matrix_band(p, ("hydra", "paper", f"k{k}")).steps.size for p in plist):
        rows.append(("paper", ("hydra", "paper", f"k{k}"), f"paper $\\Delta_l^{{{k}}}$ = clean − ablated logit at layer l"))
    return rows


def _hydra_layout(n_panels: int, n_rows: int, opts: Options):
    """The figure and one SubFigure per quantity row, each with its panels on a grid of at most
    ``max_columns`` columns: the quantity is the row's title, so a panel's title is only its source
    (a "source: quantity" title overlapped its neighbour's at 7 in)."""
    from matplotlib.figure import Figure

    from hierlatent.plot.style import PANEL_HEIGHT_IN, SINGLE_COLUMN_IN

    ncols = max(1, min(n_panels, opts.max_columns))
    grid_rows = -(-max(1, n_panels) // ncols)
    width = min(opts.width, max(SINGLE_COLUMN_IN, 2.6 * ncols))
    fig = Figure(figsize=(width, (PANEL_HEIGHT_IN + 0.2) * grid_rows * max(1, n_rows)), layout="constrained")
    subs = fig.subfigures(max(1, n_rows), 1, squeeze=False).ravel().tolist()
    rows = []
    for sub in subs:
        axes = sub.subplots(grid_rows, ncols, squeeze=False).ravel().tolist()
        for ax in axes[n_panels:]:
            ax.set_visible(False)
        rows.append((sub, axes[:n_panels]))
    return fig, rows


def _heat_panel(ax, panel: Panel, kind: str, d, cmap, norm, opts: Options, k: int, fig) -> tuple[bool, str | None]:
    """One panel of a Fig. 4 row; (has undefined cells, why the paper's Δ is degenerate here or None)."""
    if kind == "headwise":
        return _headwise_cell(ax, panel, d, cmap, norm, fig.tidy), None
    m = d.mean.T  # [L, S]
    _mesh(ax, d.steps, m, cmap, norm, opts)
    why = degenerate(panel.source) if kind == "paper" else None
    ax.set_title(band_title(panel) + ("\n(degenerate: logit lens)" if why else ""))
    quantity = {"mcgrath": "McGrath compensation", "paper": f"paper Δ (k={k})"}[kind]
    fig.tidy.add_matrix(panel.title, quantity, d.steps, m, d.low.T, d.high.T, d.n.T)
    return bool(np.isnan(m).any()), why


def _headwise(panel: Panel):
    """Seed mean of the headwise compensation [L, H] at the last common step, with that step; or None."""
    per_run = []
    for r in panel.runs:
        steps = [s for s, p in sorted(r.probes.items()) if isinstance(p.get("hydra", {}).get("headwise", {}).get("compensation"), list)]
        if steps:
            per_run.append((steps[-1], np.array(r.probes[steps[-1]]["hydra"]["headwise"]["compensation"], dtype=np.float64)))
    if not per_run:
        return None
    return min(s for s, _ in per_run), np.nanmean(np.stack([m for _, m in per_run]), 0)


def fig_hydra(plist: list[Panel], opts: Options, k: int = 1):
    """Fig. 4 (k = 1): McGrath compensation, headwise compensation and the paper's Δ_l^1, one row each,
    one colour scale per row; Fig. 4b (k = 2): the paper's Δ_l^2. Returns (figure, panels with data)."""
    import matplotlib as mpl

    kinds = _rows_for_fig4(plist, k)
    fig, rows = _hydra_layout(len(plist), len(kinds), opts)
    fig.tidy, filled, notes, grey = Rows(), set(), [], False
    if not kinds:
        for ax, panel in zip(rows[0][1], plist):
            no_data(ax, panel, f"Hydra (k={k})")
        return fig, 0
    for (sub, axes), (kind, path, title) in zip(rows, kinds):
        data = [(_headwise(p) if kind == "headwise" else _matrix_band(p, path)) for p in plist]
        arrays = [d[1] if kind == "headwise" else d.mean for d in data if d is not None and (kind == "headwise" or d.steps.size)]
        norm, cmap = _norm(arrays, True)
        for ax, panel, d in zip(axes, plist, data):
            if d is None or (kind != "headwise" and not d.steps.size):
                no_data(ax, panel, title.split(" (")[0])
                continue
            filled.add(panel.title)
            undefined, why = _heat_panel(ax, panel, kind, d, cmap, norm, opts, k, fig)
            grey |= undefined
            notes += [f"{panel.title}: {why}"] if why else []
        sub.suptitle(title, fontsize=mpl.rcParams["axes.titlesize"])
        sub.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9).set_label("logit")
    undefined_legend(fig, [({"facecolor": UNDEFINED_GREY, "edgecolor": "0.6"}, "undefined (no value: layer < k, or not measured)")] if grey else [])
    caption(fig, _fig4_caption([kind for kind, _, _ in kinds], k, notes))
    return fig, len(filled)


def _headwise_cell(ax, panel: Panel, data, cmap, norm, rows: Rows) -> bool:
    """Draw one layer x head compensation panel; returns whether it has undefined (grey) cells."""
    step, m = data
    ax.pcolormesh(np.arange(m.shape[1] + 1) - 0.5, np.arange(m.shape[0] + 1) - 0.5, np.ma.masked_invalid(m), cmap=cmap, norm=norm)
    ax.set_ylim(m.shape[0] - 0.5, -0.5)
    ax.set_xlabel("head")
    ylabel(ax, "layer")
    ax.set_title(f"{band_title(panel)}\nstep {step:,}")
    rows.add_matrix(panel.title, "headwise compensation", range(m.shape[1]), m, column="head")
    return bool(np.isnan(m).any())


def _fig4_caption(kinds: list[str], k: int, notes: list[str]) -> str:
    """What each row of Fig. 4/4b shows, what is missing, and why the paper's Δ is degenerate here."""
    text = ""
    if "mcgrath" in kinds:
        text += "McGrath compensation = direct effect of an ablated attention layer minus its total effect on the correct-token logit (the Hydra effect). "
    elif k == 1:
        text += "McGrath compensation not measured (HydraProbe mcgrath: false). "
    sup = {1: "¹", 2: "²"}.get(k, f"^{k}")
    text += (f"Paper Δ{sup} = logit of the last input token read at layer l, clean minus with decoder layer l−{k}'s output zeroed; "
             "the paper plots max(0, −Δ).")
    if notes:
        text += (" Degenerate here (" + "; ".join(notes) + "): on a bias-free model zeroing a decoder layer's output zeroes the whole residual stream, "
                 "so Δᵏ is the current token's logit-lens value at layer l for every k, not a compensation.")
    return text


def _fv_band(panel: Panel):
    """FV improvement [L, S] mean, CI low/high and n: over seeds, or from the per-pair standard error."""
    b = _matrix_band(panel, FV)
    if not b.steps.size:
        return None
    mean, low, high, n = b.mean.T, b.low.T, b.high.T, b.n.T
    if panel.seeds == 1:
        s, se = layer_matrix(panel.source, ("function_vectors", "improvement_stderr"))
        pairs = [panel.source.probes[int(x)].get("function_vectors", {}).get("n_pairs") for x in b.steps]
        if len(s) == len(b.steps) and all(isinstance(p, int) and p >= 2 for p in pairs):
            p = np.array(pairs, dtype=np.float64)[None, :] * np.ones_like(se)
            half = t_halfwidth(se * np.sqrt(p), p)
            low, high = mean - half, mean + half
    return b.steps, mean, low, high, n


def fig_function_vectors(plist: list[Panel], opts: Options):
    """Fig. 5a: function-vector improvement (patched − clean gold logit), layer x step, diverging scale;
    cells whose 95% CI (over seeds, or over prompt pairs for one run) contains 0 are hatched."""
    from hierlatent.plot.style import new_figure

    fig, axes = new_figure(len(plist), opts.width, opts.max_columns)
    data = [_fv_band(p) for p in plist]
    norm, cmap = _norm([d[1] for d in data if d is not None], True)
    fig.tidy, filled, grey, hatched, no_ci = Rows(), 0, False, False, []
    for ax, panel, d in zip(axes, plist, data):
        if d is None:
            no_data(ax, panel, "function-vector")
            continue
        filled += 1
        steps, mean, low, high, n = d
        has_ci = np.isfinite(low)
        hatch = has_ci & (low <= 0) & (high >= 0)
        _mesh(ax, steps, mean, cmap, norm, opts, hatch)
        ax.set_title(band_title(panel))
        grey |= bool(np.isnan(mean).any())
        hatched |= bool(hatch.any())
        if not has_ci.any():
            no_ci.append(panel.title)
        fig.tidy.add_matrix(panel.title, "FV improvement", steps, mean, low, high, n)
    fig.colorbar(__import__("matplotlib").cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9).set_label("FV improvement (logit)")
    undefined_legend(fig, ([({"facecolor": UNDEFINED_GREY, "edgecolor": "0.6"}, "undefined (no value)")] if grey else [])
                     + ([({"facecolor": "white", "edgecolor": "0.25", "hatch": "////"}, "95% CI contains 0")] if hatched else []))
    text = ("Function-vector improvement: gold-object logit with the source prompt's last-position attention output added at layer l, minus the clean logit. "
            + ("Mean over seeds; hatched: the 95% t-interval over seeds contains 0." if any(p.seeds > 1 for p in plist)
               else "Mean over prompt pairs; hatched: the 95% t-interval over pairs contains 0."))
    if no_ci:
        text += f" No uncertainty recorded for {', '.join(no_ci)} (probe JSON without improvement_stderr)."
    caption(fig, text)
    return fig, filled


def has_function_vectors(source: Source) -> bool:
    """Whether any checkpoint of the source has function-vector results."""
    return len(layer_matrix(source, FV)[0]) > 0


def has_hydra_k(source: Source, k: int) -> bool:
    """Whether any checkpoint of the source has paper-faithful Hydra results for this k."""
    return len(layer_matrix(source, ("hydra", "paper", f"k{k}"))[0]) > 0


def has_hydra(source: Source) -> bool:
    """Whether any checkpoint has Hydra results (McGrath or the paper's k = 1)."""
    return has_hydra_k(source, 1) or len(layer_matrix(source, MCGRATH)[0]) > 0
