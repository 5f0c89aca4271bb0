"""Paper style: column widths, fonts, clean spines, step axes, empty-panel labels, atomic saving.

Figures are built as ``matplotlib.figure.Figure`` objects (never pyplot), so no global backend is set and
nothing happens at import; ``savefig`` picks the Agg/PDF canvas from the output format.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from hierlatent.io import atomic_write_bytes

SINGLE_COLUMN_IN = 3.4
DOUBLE_COLUMN_IN = 7.0
PANEL_HEIGHT_IN = 2.1

RC = {
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Apply the paper rcParams for the duration of the block only."""
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def new_figure(n_panels: int, width: float, max_columns: int, height: float = PANEL_HEIGHT_IN, extra_right: bool = False):
    """A Figure with ``n_panels`` axes on a grid of at most ``max_columns`` columns.

    Args:
        n_panels: number of panels (>= 1).
        width: figure width in inches.
        max_columns: panels per row before wrapping.
        height: height of one row in inches.
        extra_right: leave room on the right for a shared colorbar.

    Returns:
        (figure, list of axes in reading order).
    """
    from matplotlib.figure import Figure

    ncols = max(1, min(n_panels, max_columns))
    nrows = -(-n_panels // ncols)
    # Fewer panels than columns: shrink the figure instead of stretching the panels (floor: one column).
    width = min(width, max(SINGLE_COLUMN_IN, width * ncols / max_columns))
    fig = Figure(figsize=(width, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def step_axis(ax, steps: np.ndarray, xscale: str) -> None:
    """Step axis: thousands separators; log scale when ``xscale`` is "log", or "auto" and the steps span
    two decades or more without a step 0 (OLMo checkpoints 1k ... 738k).

    Args:
        ax: the axes.
        steps: every step plotted on the axis.
        xscale: "auto", "linear" or "log".
    """
    from matplotlib.ticker import FuncFormatter

    steps = np.asarray(steps, dtype=np.float64)
    use_log = xscale == "log" or (xscale == "auto" and steps.size > 1 and steps.min() > 0 and steps.max() / steps.min() >= 100)
    if use_log and steps.size and steps.min() > 0:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_step_label))
    ax.set_xlabel("training step")


def _step_label(x: float, _pos: int | None = None) -> str:
    """Tick label: "1,200" below 10k, "738k" up to a million, then "1.5M" (narrow panels)."""
    if abs(x) >= 1_000_000:
        return f"{x / 1e6:g}M"
    if abs(x) >= 10_000:
        return f"{x / 1000:,.0f}k"
    return f"{x:,.0f}"


def empty_panel(ax, title: str, message: str) -> None:
    """A labelled empty panel: a missing source is shown, not skipped."""
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=6.5, color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_color("0.8")
    ax.set_facecolor("0.97")


def save_figure(fig, output_dir: Path, name: str, formats: list[str], dpi: int) -> list[Path]:
    """Write ``<output_dir>/<name>.<fmt>`` for every format, each atomically.

    Args:
        fig: the figure.
        output_dir: directory to write into (created).
        name: file stem, e.g. "fig2_loss".
        formats: file formats, e.g. ["png", "pdf"].
        dpi: raster resolution.
    """
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        path = Path(output_dir) / f"{name}.{fmt}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths
