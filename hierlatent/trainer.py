"""``HierlatentTrainer`` (Lightning ``Trainer`` + the ``generate`` and ``probe-olmo`` subcommands) and a resumable logger.

``ResumableTensorBoardLogger`` keeps one run directory across restarts and hides the events a killed run
wrote after its last checkpoint (SummaryWriter ``purge_step``), so TensorBoard curves have each step once;
within a run a tag logged twice at one step (Lightning's ``epoch``) keeps its first value only.
It also writes the HPARAMS-tab session with ``val/loss`` as its metric (without a fake scalar at step 0)
and a custom-scalars layout grouping Loss, Throughput and Probes.
"""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from hierlatent._lightning_compat import file_writer, reopen_writer, writer_is_open
from hierlatent.callbacks.report import run_directory
from hierlatent.olmo.sweep import probe_olmo as _probe_olmo

#: TensorBoard custom-scalars layout (categories -> charts -> [kind, tag regexes])
CUSTOM_SCALARS: dict[str, dict[str, list]] = {
    "Loss": {"loss": ["Multiline", ["train/loss", "val/loss", r"reference/.*"]]},
    "Throughput": {
        "tokens per second": ["Multiline", ["throughput/tokens_per_sec"]],
        "MFU": ["Multiline", ["throughput/mfu"]],
        "grad norm": ["Multiline", ["train/grad_norm"]],
        "learning rate": ["Multiline", ["train/lr"]],
    },
    "Probes": {"probes": ["Multiline", [r"probes/.*"]]},
}


class ResumableTensorBoardLogger(TensorBoardLogger):
    """TensorBoard logger that can purge a killed run's orphan events and writes an HPARAMS session on ``val/loss``."""

    def __init__(self, *args: Any, hparams_metrics: tuple[str, ...] = ("val/loss",), **kwargs: Any) -> None:
        """
        Args:
            args: positional arguments of ``TensorBoardLogger`` (``save_dir``, ``name``, ``version``).
            hparams_metrics: scalar tags listed as metrics in the HPARAMS tab.
            kwargs: keyword arguments of ``TensorBoardLogger`` (``save_dir``, ``name``, ``version``, ...).
        """
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(*args, **kwargs)
        self.hparams_metrics = tuple(hparams_metrics)
        self._last_step: dict[str, int] = {}  # tag -> last step written, so no tag gets two values at one step

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Write ``metrics`` at ``step``, dropping tags already written at that step (the first value stays).

        Lightning adds ``epoch`` to every call, so a validation step that also logs training metrics would
        otherwise show ``epoch`` twice.

        Args:
            metrics: tag -> value.
            step: global step (``None``: Lightning's default, not de-duplicated).
        """
        if step is not None:
            metrics = {k: v for k, v in metrics.items() if self._last_step.get(k) != step}
            self._last_step.update(dict.fromkeys(metrics, step))
            if not metrics:
                return
        super().log_metrics(metrics, step)

    def purge_from(self, step: int, keep: tuple[str, ...] = ("val/loss",)) -> None:
        """Hide events of earlier runs at steps >= ``step`` (call when resuming from a checkpoint at ``step``).

        The validation at the checkpoint's own step runs after the checkpoint is saved and is not repeated on
        resume, so its value (measured on exactly the restored weights) is carried over: the ``keep`` tags the
        killed run wrote at ``step`` are read back and written again after the purge marker.

        Args:
            step: the restored global step; the next event file starts with a purge marker at it.
            keep: tags whose value at exactly ``step`` survives the purge.
        """
        carried = self._values_at(int(step), keep) if rank_zero_only.rank == 0 else {}
        reopen_writer(self, int(step))  # purge_step only acts when a writer is created
        if carried:
            self.log_metrics(carried, int(step))

    def _values_at(self, step: int, tags: tuple[str, ...]) -> dict[str, float]:
        """The last value each tag has at ``step`` in this run directory's event files (as TensorBoard merges them)."""
        from pathlib import Path

        from hierlatent.events import EVENT_GLOB, read_scalars

        files = sorted(Path(self.log_dir).glob(EVENT_GLOB))
        if not files or not tags:
            return {}
        scalars = read_scalars(files)
        out = {}
        for tag in tags:
            if tag in scalars:
                steps, values = scalars[tag]
                hits = values[steps == step]
                if hits.size:
                    out[tag] = float(hits[-1])
        return out

    @property
    def experiment(self) -> Any:
        new = not writer_is_open(self)
        writer = super().experiment
        if new and rank_zero_only.rank == 0:
            writer.add_custom_scalars(CUSTOM_SCALARS)
        return writer

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None) -> None:
        from torch.utils.tensorboard.summary import hparams

        params = _as_dict(params)
        self.hparams.update(params)  # saved to hparams.yaml by the parent's save()
        flat = {k: _hparam_value(v) for k, v in flatten_params(params).items()}
        if metrics:
            self.log_metrics(metrics, step)
        # metric values are read from the scalar tags themselves: no placeholder scalar is written
        exp, ssi, sei = hparams(flat, {tag: 0.0 for tag in self.hparams_metrics})
        writer = file_writer(self.experiment)
        for summary in (exp, ssi, sei):
            writer.add_summary(summary, step)


def _as_dict(params: Any) -> dict[str, Any]:
    """Hyper-parameters as a dict (an ``argparse.Namespace`` or a mapping; None is empty)."""
    if params is None:
        return {}
    return dict(vars(params) if isinstance(params, Namespace) else params)


def flatten_params(params: Mapping[str, Any], parent: str = "") -> dict[str, Any]:
    """Nested hyper-parameters as ``{"a/b": value}`` (mappings, namespaces and dataclasses are descended into).

    Args:
        params: the hyper-parameters.
        parent: key prefix of this level.
    """
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{parent}/{key}" if parent else str(key)
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        elif isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name))
        else:
            flat[name] = value
    return flat


def _hparam_value(value: Any) -> int | float | str | bool:
    """A value the HPARAMS tab takes: numpy scalars as Python numbers, non-primitives as their text."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)


class HierlatentTrainer(Trainer):
    """Lightning ``Trainer`` with hierlatent's extra subcommands and one run directory per run for any logger."""

    @property
    def log_dir(self) -> str | None:
        """Lightning's, except for a logger other than TensorBoard's or CSV's (W&B, MLflow): the run's own folder
        (``report.run_directory``), so two runs do not share one ``hf/`` and ``probes/`` in the logger's save_dir.
        Every rank must call it (rank 0's directory is broadcast, as Lightning's)."""
        logger = self.loggers[0] if self.loggers else None
        if logger is None or isinstance(logger, (TensorBoardLogger, CSVLogger)):
            return super().log_dir
        return self.strategy.broadcast(run_directory(logger, self.default_root_dir))

    def generate(self, model: LightningModule, datamodule: LightningDataModule) -> None:
        """Generate (or find in the cache) the corpus the config's data module needs, then print its path and meta.

        Args:
            model: unused; present because every subcommand receives the configured model.
            datamodule: the configured ``CorpusDataModule``.
        """
        datamodule.prepare_data()
        datamodule.setup("fit")
        corpus = datamodule.corpus
        meta = dict(corpus.meta)
        summary = {k: meta.get(k) for k in ("name", "class_path", "vocab_size", "n_tokens", "n_shards",
                                            "reference_losses", "generation")}
        print(f"corpus: {corpus.path}")
        print(json.dumps(summary, indent=2))
        sys.stdout.flush()

    #: ``hierlatent probe-olmo``: a Trainer subcommand is a method whose signature (after ``self``) is its CLI;
    #: this one lives with the rest of the OLMo sweep and is bound here, always
    probe_olmo = _probe_olmo
