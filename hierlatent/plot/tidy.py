"""Tidy CSV of exactly what a figure plots: one row per plotted number, written next to the figure.

Every figure function appends rows to ``fig.tidy`` (a `Rows` list); `write_csv` saves them as
``<name>.csv`` with the columns of `COLUMNS` (empty where a column does not apply, e.g. ``layer`` on a loss
curve). ``value`` is the plotted value (the seed mean in a sweep); ``ci_low``/``ci_high`` the plotted
band or interval; ``n`` the number of runs (seeds) behind the value.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from hierlatent.io import atomic_write_text

COLUMNS = ("panel", "quantity", "series", "step", "layer", "head", "value", "ci_low", "ci_high", "n")


class Rows(list):
    """The rows of one figure: dicts keyed by `COLUMNS`."""

    def add(self, panel: str, quantity: str, value: float, series: str = "", step: int | None = None,
            layer: int | None = None, head: int | None = None, ci_low: float = math.nan,
            ci_high: float = math.nan, n: int | None = None) -> None:
        """Append one plotted number (NaN values are kept: they are the grey "undefined" cells)."""
        self.append({"panel": panel, "quantity": quantity, "series": series, "step": step, "layer": layer,
                     "head": head, "value": float(value), "ci_low": float(ci_low), "ci_high": float(ci_high), "n": n})

    def add_curve(self, panel: str, quantity: str, series: str, steps, values, low=None, high=None, n=None) -> None:
        """Append a curve: one row per step."""
        nan = np.full(len(steps), np.nan)
        low, high = (nan if low is None else low), (nan if high is None else high)
        for i, step in enumerate(np.asarray(steps).tolist()):
            self.add(panel, quantity, values[i], series, int(step), ci_low=low[i], ci_high=high[i],
                     n=None if n is None else int(np.asarray(n).reshape(-1)[i] if np.ndim(n) else n))

    def add_matrix(self, panel: str, quantity: str, columns, matrix, low=None, high=None, n=None,
                   column: str = "step") -> None:
        """Append a heatmap ``matrix [L, C]``: one row per cell, ``column`` = "step" or "head"."""
        for layer in range(matrix.shape[0]):
            for j, c in enumerate(np.asarray(columns).tolist()):
                self.add(panel, quantity, matrix[layer, j], step=int(c) if column == "step" else None,
                         head=int(c) if column == "head" else None, layer=layer,
                         ci_low=math.nan if low is None else low[layer, j],
                         ci_high=math.nan if high is None else high[layer, j],
                         n=None if n is None else int(n[layer, j]))


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def write_csv(rows: list[dict], path: Path) -> Path:
    """Write the rows (header `COLUMNS`; floats in full precision, NaN/None as empty cells) atomically.

    Args:
        rows: the figure's rows.
        path: the CSV file.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in COLUMNS])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def read_csv(path: Path) -> list[dict]:
    """Read a tidy CSV back: numbers as float/int, empty cells as None."""
    out = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for key, cell in row.items():
                if cell == "":
                    parsed[key] = None
                elif key in ("step", "layer", "head", "n"):
                    parsed[key] = int(cell)
                elif key in ("value", "ci_low", "ci_high"):
                    parsed[key] = float(cell)
                else:
                    parsed[key] = cell
            out.append(parsed)
    return out
