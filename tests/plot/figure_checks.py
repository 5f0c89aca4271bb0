"""What a reviewer checks on every rendered figure, shared by the plot tests: axes with data carry both
labels, no placeholder panel, no two titles (or a title and a figure legend) drawn over each other, and
the lines and heatmaps hold exactly the numbers of the figure's tidy CSV.
"""

from __future__ import annotations

import math

import numpy as np


def data_axes(fig) -> list:
    """Visible axes that show data (not colorbars, not hidden grid cells)."""
    return [ax for ax in fig.axes if ax.get_visible() and (ax.get_lines() or ax.collections) and ax.get_label() != "<colorbar>"]


def row_title(ax) -> str:
    """The title of the row (SubFigure) an axes sits in, "" outside one: Fig. 4 names its quantities there."""
    sup = getattr(ax.get_figure(root=False), "_suptitle", None)
    return sup.get_text() if sup is not None and ax.get_figure(root=False) is not ax.get_figure(root=True) else ""


def check_labels_and_no_placeholders(figs: dict) -> None:
    """Every data axes has an x and a y label; no text of a placeholder or an empty panel anywhere."""
    for name, fig in figs.items():
        axes = data_axes(fig)
        assert axes, name
        for ax in axes:
            assert ax.get_xlabel() and ax.get_ylabel(), (name, ax.get_title())
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert not any("run given" in t or t.startswith("no ") for t in texts), (name, texts)


def _title_boxes(fig) -> list[tuple[int, str, object]]:
    """(owner, text, window extent) of every title drawn: axes titles of visible axes, (sub)figure titles, and the
    entries (text and handle, not the padded frame) of every figure legend, whose own entries share an owner."""
    boxes = []
    for ax in fig.axes:
        if ax.get_visible():
            boxes += [(id(t), t.get_text(), t.get_window_extent()) for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
    stack = [fig]
    while stack:
        f = stack.pop()
        stack += list(f.subfigs)
        if f._suptitle is not None and f._suptitle.get_text():
            boxes.append((id(f), f._suptitle.get_text(), f._suptitle.get_window_extent()))
        for legend in f.legends:
            boxes += [(id(legend), f"<legend {t.get_text()}>", t.get_window_extent()) for t in legend.get_texts()]
            boxes += [(id(legend), "<legend handle>", h.get_window_extent()) for h in legend.legend_handles]
    return boxes


def overlapping_titles(fig) -> list[tuple[str, str]]:
    """Pairs of titles (or a title and a figure legend) whose drawn bounding boxes intersect."""
    # the layout engine places titles and legends only when the figure is drawn (a bare Figure's canvas
    # is FigureCanvasBase, whose draw() does nothing)
    fig.draw_without_rendering()
    boxes = _title_boxes(fig)
    return [(a, b) for i, (owner_a, a, box_a) in enumerate(boxes) for owner_b, b, box_b in boxes[i + 1:]
            if owner_a != owner_b and box_a.overlaps(box_b)]


def lines_match_csv(fig, rows, quantity: str, ylabel: str = "") -> int:
    """Every labelled line of ``quantity`` (on the axes whose y label starts with ``ylabel``) equals the CSV's
    values for its (panel, series); returns how many. Untitled axes (fig2's gap row) take the titles in order."""
    checked = 0
    titled = [ax.get_title().split(" (")[0] for ax in data_axes(fig) if ax.get_title()]
    chosen = [ax for ax in data_axes(fig) if ax.get_ylabel().startswith(ylabel)]
    for i, ax in enumerate(chosen):
        panel = ax.get_title().split(" (")[0] or titled[i]
        for line in ax.get_lines():
            mine = [r for r in rows if r["panel"] == panel and r["quantity"] == quantity and r["series"] == line.get_label()]
            if mine:
                np.testing.assert_allclose(line.get_xdata(), [r["step"] for r in mine])
                np.testing.assert_allclose(line.get_ydata(), [r["value"] for r in mine], rtol=1e-12)
                checked += 1
    return checked


def mesh_matches_csv(fig, rows, quantity: str, title_part: str) -> int:
    """Every heatmap whose row or panel title contains ``title_part`` equals the CSV's ``quantity`` cells of
    its panel (layer x step)."""
    checked = 0
    for ax in data_axes(fig):
        if title_part in f"{row_title(ax)}\n{ax.get_title()}":
            panel = ax.get_title().split("\n")[0].split(" (")[0]
            mine = [r for r in rows if r["panel"] == panel and r["quantity"] == quantity]
            layers, steps = max(r["layer"] for r in mine) + 1, len({r["step"] for r in mine})
            want = np.array([math.nan if r["value"] is None else r["value"] for r in mine]).reshape(layers, steps)
            got = np.ma.filled(ax.collections[0].get_array().astype(float), np.nan).reshape(layers, steps)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            checked += 1
    return checked
