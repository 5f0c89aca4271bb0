"""What ``hierlatent fit`` tells its user: where the run and corpus are, how training goes, what it left.

- ``start_lines`` / ``summary_lines``: the run directory and corpus at the start; steps, tokens, final
  losses against the reference losses, where the exports, probe JSON and TensorBoard files are, and the
  commands to look at them at the end. Printed by ``hierlatent.cli`` on rank 0 only (no collectives).
- ``run_directory``: where a run's files go for any logger (TensorBoard, CSV, W&B, MLflow), the rule
  ``HierlatentTrainer.log_dir`` broadcasts and the lines above print.
- ``LogProgress``: a periodic one-line progress message for logs that are not a terminal (a file, CI),
  where tqdm's bar would be a stream of carriage returns.
- ``AlignValidation``: a fractional ``val_check_interval`` resolved from the same planned step count as
  ``HFCheckpoint.every_fraction``, so val/loss, the export and the probe JSON share their steps.
- ``FlopsFreeSummary``: Lightning's model summary without its "Total Flops" line (0 unless an example
  input is set), with the analytic training FLOPs per token instead.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def _loss(value: Any) -> float | None:
    return None if value is None else float(value)


def run_directory(logger: Any, default_root: str = ".") -> str | None:
    """The directory of a run's own files (HF exports, probe JSON, config.yaml), computed here (no broadcast).

    TensorBoard and CSV loggers: their ``log_dir``, as Lightning's ``Trainer.log_dir``. Any other logger (W&B,
    MLflow): ``<save_dir>/<name>/<version>``, the folder Lightning's ModelCheckpoint puts ``checkpoints/`` in
    (for an MLflow file store, the run's own folder), not the ``save_dir`` that Lightning's ``Trainer.log_dir``
    gives and that every run of such a logger shares.

    Args:
        logger: the first logger (None: no logger, None returned).
        default_root: the trainer's ``default_root_dir``, for a logger without a local ``save_dir``.
    """
    if logger is None:
        return None
    if isinstance(logger, (TensorBoardLogger, CSVLogger)):
        return logger.log_dir
    _ = logger.experiment  # W&B and MLflow name their run when it is created (Lightning creates it in setup)
    version = logger.version
    version = version if isinstance(version, str) else f"version_{version}"
    return os.path.join(logger.save_dir or default_root, str(logger.name), version)


def start_lines(log_dir: str | None, corpus: Path, cached: bool) -> list[str]:
    """The lines ``fit`` prints before it starts: run directory and corpus (cached or to be built)."""
    state = "found in the cache" if cached else "not in the cache: generating it now"
    return [f"run directory: {log_dir or '(no logger)'}", f"corpus: {corpus} ({state})"]


def summary_lines(trainer: Trainer, module: LightningModule, references: dict[str, float]) -> list[str]:
    """The end-of-fit summary (call on rank 0 only: it reads files and local metrics, no collectives)."""
    metrics = trainer.callback_metrics
    train, val = _loss(metrics.get("train/loss")), _loss(metrics.get("val/loss"))
    lines = [f"done: {trainer.global_step} steps, {getattr(module, 'tokens_seen', 0):,} training tokens"]
    losses = ", ".join(f"{k} {v:.4f}" for k, v in (("train", train), ("val", val)) if v is not None)
    refs = ", ".join(f"{k} {v:.4f}" for k, v in sorted(references.items(), key=lambda kv: kv[1]) if math.isfinite(v))
    if losses:
        lines.append(f"final loss (nats/token): {losses}" + (f"; reference losses: {refs}" if refs else ""))
    logger = trainer.logger
    run_dir = run_directory(logger, trainer.default_root_dir)
    if run_dir is not None:
        log_dir = Path(run_dir)
        exports = sorted((log_dir / "hf").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        probes = sorted((log_dir / "probes").glob("step-*.json"))
        lines.append(f"HF exports: {len(exports)} in {log_dir / 'hf'}" + (f" (last: {exports[-1].name})" if exports else ""))
        if probes:
            lines.append(f"probe results: {len(probes)} JSON files in {log_dir / 'probes'}")
        if isinstance(logger, TensorBoardLogger):
            lines.append(f"TensorBoard events: {log_dir}")
            lines.append(f"look at them: tensorboard --logdir {log_dir.parent}    hierlatent plot --runs {log_dir}")
        else:  # scalars and probe images went to the logger's own store; plot reads the probe JSON
            lines.append(f"scalars and probe images: {type(logger).__name__} (no TensorBoard events)")
            lines.append(f"look at them: hierlatent plot --runs {log_dir}")
    return lines


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class LogProgress(ProgressBar):
    """One progress line (step/total, %, tokens, train loss, steps/s, elapsed, ETA) at most every N seconds."""

    def __init__(self, every_seconds: float = 30.0, every_fraction: float = 0.1) -> None:
        """
        Args:
            every_seconds: at most one line per this many seconds (besides the fraction marks).
            every_fraction: also a line whenever another fraction of the planned steps is done.
        """
        super().__init__()
        self.every_seconds, self.every_fraction = every_seconds, every_fraction
        self._enabled = True
        self._start = self._last = 0.0
        self._total = 0
        self._mark = self._first = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = self._last = time.monotonic()
        total = trainer.estimated_stepping_batches
        self._total = int(total) if math.isfinite(total) else 0
        self._first = trainer.global_step
        self._mark = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        step, now = trainer.global_step, time.monotonic()
        fraction_step = max(1, round(self.every_fraction * self._total)) if self._total else 0
        crossed = fraction_step and step // fraction_step > self._mark // fraction_step
        if not crossed and now - self._last < self.every_seconds:
            return
        self._last, self._mark = now, step
        rate = (step - self._first) / max(now - self._start, 1e-9)
        parts = [f"step {step}/{self._total} ({100 * step / self._total:.0f}%)" if self._total else f"step {step}"]
        tokens = getattr(pl_module, "tokens_seen", None)
        if tokens is not None:
            parts.append(f"{tokens:,} tokens")
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            parts.append(f"train/loss {float(loss):.4f}")
        parts.append(f"{rate:.2f} steps/s, elapsed {_duration(now - self._start)}")
        if self._total and rate > 0:
            parts.append(f"ETA {_duration((self._total - step) / rate)}")
        print(" | ".join(parts), file=sys.stderr, flush=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get("val/loss")
        if self._enabled and trainer.is_global_zero and not trainer.sanity_checking and value is not None:
            print(f"validation at step {trainer.global_step}: val/loss {float(value):.4f}", file=sys.stderr, flush=True)


class AlignValidation(Callback):
    """Validate every ``round(val_check_interval * planned steps)`` optimizer steps, as HFCheckpoint saves.

    Lightning resolves a fractional ``val_check_interval`` as ``int(batches per epoch * fraction)``
    (e.g. 124 of 1,248), HFCheckpoint's ``every_fraction`` as ``round(fraction * planned steps)`` (125):
    this callback makes the first agree with the second, for runs that fit in one epoch.
    """

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        fraction = trainer.val_check_interval
        batches = trainer.num_training_batches
        if not isinstance(fraction, float) or not 0 < fraction < 1 or not math.isfinite(batches):
            return
        total = int(trainer.estimated_stepping_batches)  # the count HFCheckpoint resolves its fraction from
        accumulate = trainer.accumulate_grad_batches
        if total * accumulate > batches:
            return  # several epochs: Lightning's per-epoch fraction stands
        trainer.val_check_batch = max(1, round(fraction * total)) * accumulate


class FlopsFreeSummary(ModelSummary):
    """Lightning's model summary with the analytic training FLOPs per token instead of "Total Flops: 0"."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flops_per_token = getattr(pl_module, "flops_per_token", None)
        super().on_fit_start(trainer, pl_module)

    def summarize(self, summary_data: list, total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes: dict[str, int], total_flops: int = 0, **kwargs: Any) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

        from hierlatent._lightning_compat import summary_table

        columns = [c for c in summary_data if c[0] != "FLOPs"]  # per-layer FLOPs: 0 without an example input
        table = summary_table(total_parameters, trainable_parameters, model_size, total_training_modes,
                              total_flops, *columns)
        lines = [ln for ln in table.splitlines() if not ln.endswith("Total Flops")]
        if getattr(self, "_flops_per_token", None):
            lines.append(f"{get_human_readable_count(self._flops_per_token):<10}Training FLOPs per token (6N + attention)")
        print("\n".join(lines), file=sys.stderr, flush=True)
