"""Pull plot-ready arrays out of a `Source`: series over steps and layer x step matrices.

Everything here is pure numpy over the probe-JSON dicts, so the figures stay about drawing.
"""

from __future__ import annotations

import math

import numpy as np

from hierlatent.documents import extract_fragment
from hierlatent.plot.sources import Source


def _num(x: object) -> float:
    """A JSON value as float; None / non-numbers become NaN (a probe that failed at one step)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def vector_series(source: Source, path: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A per-step list (e.g. induction k_order) -> steps [S], values [S, K] (NaN-padded).

    Args:
        source: the run.
        path: keys leading to the list in the probe JSON, e.g. ("induction", "k_order").
    """
    rows = {s: v for s, p in sorted(source.probes.items()) if isinstance(v := extract_fragment(p, path), list) and v}
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0))
    width = max(len(v) for v in rows.values())
    values = np.full((len(rows), width), np.nan)  # [S, K]
    for i, v in enumerate(rows.values()):
        values[i, : len(v)] = [_num(x) for x in v]
    return np.array(list(rows), dtype=np.int64), values


def scalar_series(source: Source, path: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One number per step -> steps [S], values [S] (steps without it are left out).

    Args:
        source: the run.
        path: keys leading to the number, e.g. ("induction", "standard").
    """
    found = [(s, extract_fragment(p, path)) for s, p in sorted(source.probes.items())]
    pairs = [(s, _num(v)) for s, v in found if v is not None]
    return np.array([s for s, _ in pairs], dtype=np.int64), np.array([v for _, v in pairs], dtype=np.float64)


def layer_matrix(source: Source, path: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer values over steps -> steps [S], matrix [L, S] with NaN where a layer has no value.

    The per-step node is a list indexed by layer (function vectors) or a dict ``{"<layer>": value}``
    (Hydra, where layers l < k are absent).

    Args:
        source: the run.
        path: keys leading to the per-layer node, e.g. ("hydra", "paper", "k1").
    """
    cols: dict[int, dict[int, float]] = {}
    for step, probe in sorted(source.probes.items()):
        node = extract_fragment(probe, path)
        if isinstance(node, list) and node:
            cols[step] = {i: _num(v) for i, v in enumerate(node)}
        elif isinstance(node, dict) and node:
            cols[step] = {int(k): _num(v) for k, v in node.items() if str(k).lstrip("-").isdigit()}
    cols = {s: c for s, c in cols.items() if c}
    if not cols:
        return np.zeros(0, np.int64), np.zeros((0, 0))
    n_layers = max(max(c) for c in cols.values()) + 1
    matrix = np.full((n_layers, len(cols)), np.nan)  # [L, S]
    for j, c in enumerate(cols.values()):
        for layer, v in c.items():
            matrix[layer, j] = v
    return np.array(list(cols), dtype=np.int64), matrix


def loss_curves(source: Source) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The loss curves of a source: ``train``/``val`` from TensorBoard, ``loss`` from an external CSV."""
    out = {}
    if source.loss is not None:
        out["loss"] = source.loss
    for key in ("train", "val"):
        tag = f"{key}/loss"
        if tag in source.scalars and len(source.scalars[tag][0]):
            out[key] = source.scalars[tag]
    return out


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: debiased exponential moving average; weight 0 returns the input.

    Args:
        values: the raw series [N].
        weight: smoothing weight in [0, 1).
    """
    if weight <= 0 or values.size == 0:
        return values
    out = np.empty_like(values)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):  # sequential recurrence; N is a few thousand points at most
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def step_edges(steps: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges [S+1] around the step centres for a heatmap on a (log) step axis.

    Args:
        steps: sorted step centres [S].
        log: place edges at geometric midpoints (log axis) instead of arithmetic ones.
    """
    x = np.log(steps.astype(np.float64)) if log else steps.astype(np.float64)
    if x.size == 1:
        edges = np.array([x[0] - 0.5, x[0] + 0.5]) if not log else np.array([x[0] - 0.2, x[0] + 0.2])
    else:
        mid = (x[1:] + x[:-1]) / 2
        edges = np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])
    return np.exp(edges) if log else edges
