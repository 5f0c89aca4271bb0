"""The paper's figures (docs/research.md#figures), one function each, drawn on explicit Figure objects.

Every function takes the panel list from `panels` (paper order N-gram | PCFG | OLMo | others; a missing
source is a ``Panel`` without data that is drawn as a labelled empty panel) and `Options`, and returns
``(figure, number of panels that have data)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlatent.plot.data import ema, layer_matrix, loss_curves, scalar_series, step_edges, vector_series
from hierlatent.plot.sources import PAPER_ORDER, Source
from hierlatent.plot.style import empty_panel, new_figure, step_axis


@dataclass
class Options:
    """Layout options shared by all figures (see `hierlatent.plot.cli.plot` for their meaning)."""

    width: float = 7.0
    max_columns: int = 3
    xscale: str = "auto"
    smooth: float = 0.0


@dataclass
class Panel:
    """One panel: its title and source, or the message shown when the source is missing."""

    title: str
    source: Source | None = None
    missing: str = ""


def panels(sources: list[Source], paper_slots: tuple[str, ...] = PAPER_ORDER) -> list[Panel]:
    """Panels in paper order: each slot label gets its sources or one empty panel, then the rest.

    Args:
        sources: all sources, any order.
        paper_slots: labels that always get a panel ("no <label> run given" when absent).
    """
    out = []
    for label in paper_slots:
        mine = [s for s in sources if s.label == label]
        out += [Panel(s.title, s) for s in mine] or [Panel(label, None, f"no {label} run given")]
    out += [Panel(s.title, s) for s in sources if s.label not in paper_slots]
    return out


def _ylabel(ax, text: str) -> None:
    """Y label on the first panel of each row only: the panels of a row share the quantity."""
    if ax.get_subplotspec().is_first_col():
        ax.set_ylabel(text)


def _no_data(ax, panel: Panel, what: str) -> None:
    if panel.source is None:
        empty_panel(ax, panel.title, panel.missing)
    elif not panel.source.probes:
        empty_panel(ax, panel.title, f"no probe results in\n{panel.source.path}")
    else:
        empty_panel(ax, panel.title, f"no {what} results in\n{panel.source.path}")


def fig_loss(plist: list[Panel], opts: Options):
    """Fig. 2: train (and val) loss vs step per source, reference losses as dashed horizontal lines."""
    fig, axes = new_figure(len(plist), opts.width, opts.max_columns)
    filled = 0
    for ax, panel in zip(axes, plist):
        curves = loss_curves(panel.source) if panel.source else {}
        if not curves:
            if panel.source is None:
                empty_panel(ax, panel.title, panel.missing)
            elif panel.source.kind == "olmo":
                empty_panel(ax, panel.title, "no OLMo loss given\n(--olmo_loss_csv step,loss)")
            else:
                empty_panel(ax, panel.title, f"no loss logged in\n{panel.source.path}")
            continue
        filled += 1
        colors = {"train": "C0", "loss": "C0", "val": "C1"}
        for key, (steps, values) in curves.items():
            shown = ema(values, opts.smooth) if key != "val" else values
            style = {"marker": "o", "markersize": 2.5} if key == "val" or len(steps) < 20 else {}
            ax.plot(steps, shown, color=colors[key], label=key if key != "loss" else "train", **style)
        for i, (ref, value) in enumerate(sorted(panel.source.reference_losses.items())):
            ax.axhline(value, ls="--", lw=0.8, color=f"0.{2 + 2 * (i % 4)}", label=ref)
        step_axis(ax, np.concatenate([s for s, _ in curves.values()]), opts.xscale)
        ax.set_title(panel.title)
        _ylabel(ax, "loss (nats/token)")
        ax.legend(loc="upper right")
    return fig, filled


def fig_k_order(plist: list[Panel], opts: Options):
    """Fig. 3: k-order induction score vs step, k = 1..10 on a sequential colormap, y in [0, 1]."""
    import matplotlib as mpl

    fig, axes = new_figure(len(plist), opts.width, opts.max_columns)
    data = [vector_series(p.source, ("induction", "k_order")) if p.source else (np.zeros(0), np.zeros((0, 0))) for p in plist]
    k_max = max([10] + [vals.shape[1] for _, vals in data])
    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.BoundaryNorm(np.arange(0.5, k_max + 1), cmap.N)  # one colour per integer k, shared
    filled = 0
    for ax, panel, (steps, vals) in zip(axes, plist, data):
        if not len(steps):
            _no_data(ax, panel, "induction probe")
            continue
        filled += 1
        _, std = vector_series(panel.source, ("induction", "k_order_std"))
        for k in range(vals.shape[1]):
            color = cmap(norm(k + 1))
            ax.plot(steps, vals[:, k], color=color, marker="o" if len(steps) < 20 else None, markersize=2)
            if std.shape == vals.shape:
                ax.fill_between(steps, vals[:, k] - std[:, k], vals[:, k] + std[:, k], color=color, alpha=0.15, lw=0)
        step_axis(ax, steps, opts.xscale)
        ax.set_ylim(0, 1)
        ax.set_title(panel.title)
        _ylabel(ax, "k-order induction score")
    cbar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, ticks=range(1, k_max + 1), shrink=0.9)
    cbar.set_label("k")
    return fig, filled


def fig_standard_induction(plist: list[Panel], opts: Options):
    """Fig. 3b: standard (Olsson) induction, duplicate-token and previous-token scores vs step."""
    fig, axes = new_figure(len(plist), opts.width, opts.max_columns)
    keys = (("standard", "standard induction", "C0"), ("duplicate", "duplicate token", "C2"), ("previous", "previous token", "C3"))
    filled, legend_done = 0, False
    for ax, panel in zip(axes, plist):
        series = {k: scalar_series(panel.source, ("induction", k)) for k, _, _ in keys} if panel.source else {}
        all_steps = [s for s, _ in series.values() if len(s)]
        if not all_steps:
            _no_data(ax, panel, "induction probe")
            continue
        filled += 1
        for key, label, color in keys:
            steps, values = series[key]
            if len(steps):
                ax.plot(steps, values, color=color, label=label, marker="o" if len(steps) < 20 else None, markersize=2)
        step_axis(ax, np.concatenate(all_steps), opts.xscale)
        ax.set_ylim(0, 1)
        ax.set_title(panel.title)
        _ylabel(ax, "score (max over heads)")
        if not legend_done:
            ax.legend(loc="best")
            legend_done = True
    return fig, filled


def _heatmaps(plist: list[Panel], opts: Options, path: tuple[str, ...], transform, what: str, diverging: bool, label: str):
    """Layer x step heatmaps with one shared colour scale and colorbar; NaN cells masked (grey)."""
    import matplotlib as mpl

    fig, axes = new_figure(len(plist), opts.width, opts.max_columns)
    data = [layer_matrix(p.source, path) if p.source else (np.zeros(0), np.zeros((0, 0))) for p in plist]
    data = [(s, transform(m)) for s, m in data]
    finite = np.concatenate([m[np.isfinite(m)] for _, m in data] + [np.zeros(0)])
    hi = float(np.abs(finite).max()) if finite.size else 1.0
    hi = hi if hi > 0 else 1.0
    norm = mpl.colors.Normalize(-hi if diverging else 0.0, hi)
    cmap = mpl.colormaps["RdBu_r" if diverging else "magma"].with_extremes(bad="0.88")
    filled = 0
    for ax, panel, (steps, matrix) in zip(axes, plist, data):
        if not len(steps):
            _no_data(ax, panel, what)
            continue
        filled += 1
        step_axis(ax, steps, opts.xscale)
        log = ax.get_xscale() == "log"
        y_edges = np.arange(matrix.shape[0] + 1) - 0.5
        ax.pcolormesh(step_edges(steps, log), y_edges, np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, shading="flat")
        ax.set_ylim(y_edges[-1], y_edges[0])  # layer 0 on top, like the paper's heatmaps
        ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.set_title(panel.title)
        _ylabel(ax, "layer")
    cbar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9)
    cbar.set_label(label)
    return fig, filled


def fig_hydra(plist: list[Panel], opts: Options, k: int = 1):
    """Fig. 4: Hydra compensation max(0, -delta) for ablating layer l - k, layer x step, shared scale."""
    label = f"compensation max(0, -Δ), k={k}"
    return _heatmaps(plist, opts, ("hydra", "paper", f"k{k}"), lambda m: np.maximum(0.0, -m), f"Hydra (k={k})", False, label)


def fig_function_vectors(plist: list[Panel], opts: Options):
    """Fig. 5a: function-vector improvement (patched - clean gold logit), layer x step, diverging scale."""
    return _heatmaps(plist, opts, ("function_vectors", "improvement"), lambda m: m, "function-vector", True, "FV improvement (logit)")


def has_function_vectors(source: Source) -> bool:
    """Whether any checkpoint of the source has function-vector results."""
    return len(layer_matrix(source, ("function_vectors", "improvement"))[0]) > 0


def has_hydra_k(source: Source, k: int) -> bool:
    """Whether any checkpoint of the source has paper-faithful Hydra results for this k."""
    return len(layer_matrix(source, ("hydra", "paper", f"k{k}"))[0]) > 0
