"""Render probe matrices (layer x head, layer x step) to RGB images and hand them to any Lightning logger.

Only called on rank 0 at log time, so matplotlib stays off every hot path. Uses the Agg canvas: no display
is needed on a cluster node. ``log_images`` speaks each logger's image API: TensorBoard ``add_image``,
a ``log_image(key, images, step)`` method (Lightning's WandbLogger: ``wandb.Image`` under the tag, one W&B
row per image with ``trainer/global_step``), MLflow ``log_image`` artifacts
``<tag>/step-<N>.png`` of the run, and for any other logger with a directory (CSV) PNG files
``<log_dir>/images/<name>/step-<N>.png``. Tested against the real wandb and mlflow packages in
``tests/callbacks/test_real_loggers.py`` (``.ci/loggers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def heatmap_image(
    matrix: np.ndarray | Sequence[Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
    xticklabels: Sequence[str] | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Draw one heatmap (rows on the y axis, row 0 at the bottom) and return it as an image array.

    Args:
        matrix: 2-D values, shape [rows, cols] (e.g. [layers, heads] or [layers, steps]).
        title: Figure title.
        xlabel: Label of the column axis.
        ylabel: Label of the row axis.
        xticklabels: Optional labels for the columns (e.g. the training steps).
        cmap: Matplotlib colour map name.
        vmin: Lower end of the colour scale (default: the data minimum).
        vmax: Upper end of the colour scale (default: the data maximum).

    Returns:
        uint8 array [3, H, W] (CHW, the layout ``SummaryWriter.add_image`` expects by default).
    """
    from matplotlib.figure import Figure  # imported lazily: no matplotlib cost unless images are logged
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"heatmap_image: expected a 2-D matrix, got shape {values.shape}")
    rows, cols = values.shape
    fig = Figure(figsize=(min(3 + 0.35 * cols, 14), min(2.5 + 0.3 * rows, 10)), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:  # constant matrix: widen the scale so imshow does not divide by zero
        hi = lo + 1e-12
    im = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticklabels is not None:
        # at most ~12 labels so long step axes stay readable
        stride = max(1, len(xticklabels) // 12)
        ticks = list(range(0, len(xticklabels), stride))
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(xticklabels[i]) for i in ticks], rotation=45, fontsize=7)
    fig.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # [H, W, 4]
    return np.ascontiguousarray(rgba[..., :3].transpose(2, 0, 1))  # [3, H, W]


def log_images(loggers: Sequence[Any], matrices: dict[str, Any], columns: dict[str, dict[int, list[float]]],
               step: int) -> None:
    """Render per-checkpoint matrices and growing layer x step heatmaps once, and log them to every logger.

    Args:
        loggers: Lightning loggers.
        matrices: tag -> 2-D matrix of this step (e.g. layer x head).
        columns: tag -> {step: per-layer column}; drawn as a layer x step heatmap over every step so far.
        step: the global step the images belong to.
    """
    rendered = {tag: heatmap_image(m, f"{tag} @ step {step}", "head", "layer") for tag, m in matrices.items()}
    for tag, by_step in columns.items():
        steps = sorted(by_step)
        matrix = np.array([by_step[s] for s in steps]).T  # [n_steps, L] -> [L, n_steps]
        rendered[tag] = heatmap_image(matrix, tag, "step", "layer", xticklabels=steps, cmap="magma")
    if not rendered:
        return
    for logger in loggers:
        _log_to(logger, rendered, step)


def _log_to(logger: Any, rendered: dict[str, np.ndarray], step: int) -> None:
    """One logger's image API (images are CHW uint8; W&B, MLflow and PNG files want HWC)."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

    if isinstance(logger, TensorBoardLogger):
        for tag, img in rendered.items():
            logger.experiment.add_image(tag, img, global_step=step)
        logger.experiment.flush()
    elif callable(getattr(logger, "log_image", None)):  # WandbLogger's signature
        for tag, img in rendered.items():
            logger.log_image(key=tag, images=[img.transpose(1, 2, 0)], step=step)
    elif isinstance(logger, MLFlowLogger):
        for tag, img in rendered.items():
            # one stable path per step (the key=/step= form, mlflow >= 2.15, names its files by timestamp and uuid)
            logger.experiment.log_image(logger.run_id, img.transpose(1, 2, 0), artifact_file=f"{tag}/step-{step}.png")
    elif getattr(logger, "log_dir", None):
        from matplotlib.image import imsave

        for tag, img in rendered.items():
            path = Path(logger.log_dir) / "images" / tag.removeprefix("probes/images/") / f"step-{step}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            imsave(path, img.transpose(1, 2, 0))
