"""``HFCheckpoint``: Lightning checkpoints at a step or fraction schedule, each with an HF export beside it.

The export ``<log_dir>/hf/step-<N>/`` holds ``save_pretrained`` safetensors, a copy of the corpus tokenizer
and ``hierlatent.json`` ({step, tokens_seen, run config}), so ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` open any training checkpoint without hierlatent. It is written by rank 0
only, into a temp directory renamed into place, with no collective in between (other ranks never wait
on it); a failing export is logged and training goes on. Exports follow the Lightning checkpoints they
belong to: when top-k retention deletes ``step=N.ckpt``, ``hf/step-N`` goes too.

Every ``.ckpt`` is written by ``AtomicCheckpointIO``: into a temp file in its own directory, fsynced, then
renamed over the destination, so a kill leaves the old file or the new one, never a torn one, and nothing
is staged on another filesystem. A resumed run first removes what a killed one left (``.*.tmp`` beside the
checkpoints, ``hf/.step-N.*.tmp`` exports) and completes the export of the step it resumes from if the kill
interrupted it. A step is written once: a re-run step overwrites ``step=N.ckpt`` (no ``-v1`` copies).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from hierlatent._lightning_compat import StepCheckpoint
from hierlatent.errors import ConfigError
from hierlatent.io import _umask, atomic_directory, atomic_write_json

log = logging.getLogger(__name__)
_STEP = re.compile(r"step=(\d+)")
#: what a killed save leaves: ``.<name>.<random>.tmp`` files (checkpoints) and directories (HF exports)
_DEBRIS = re.compile(r"^\..+\.tmp$|^\.step-\d+\.old$")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temp file beside the destination, fsync, rename (local paths; remote ones as Lightning)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` so that a kill at any moment leaves the previous file or the new one.

        Args:
            checkpoint: the state Lightning dumped.
            path: destination ``.ckpt`` file.
            storage_options: unsupported (as for ``TorchCheckpointIO``).
        """
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; checkpoints are meant to be shared
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


class HFCheckpoint(StepCheckpoint):
    """Lightning checkpoints every N steps or every fraction of the planned steps, plus HF exports."""

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "{step}",
        every_n_train_steps: int | None = None,
        every_fraction: float | None = None,
        save_top_k: int = -1,
        save_last: bool = True,
        monitor: str | None = None,
        mode: str = "max",
        save_weights_only: bool = False,
        export_hf: bool = True,
        verbose: bool = False,
    ) -> None:
        """
        Args:
            dirpath: directory of the .ckpt files (default: <log_dir>/checkpoints).
            filename: checkpoint name template; must contain {step} so HF exports follow deletions.
            every_n_train_steps: save every N optimizer steps (exclusive with every_fraction).
            every_fraction: save every fraction of the planned optimizer steps (paper: 0.01 = 100 checkpoints).
            save_top_k: checkpoints kept (-1 = all); without monitor the latest ones are kept (paper: 100).
            save_last: also keep last.ckpt (what --ckpt_path last resumes from).
            monitor: logged metric ranking checkpoints for save_top_k (default: the step, i.e. keep the latest).
            mode: max or min of the monitored metric is best.
            save_weights_only: save only the weights (no optimizer state: such checkpoints cannot resume).
            export_hf: write the HF export hf/step-N beside each checkpoint.
            verbose: log every save.
        """
        if every_fraction is not None and not 0 < every_fraction <= 1:
            raise ConfigError(f"--checkpoint.every_fraction: must be in (0, 1], got {every_fraction!r}")
        if every_fraction is not None and every_n_train_steps:
            raise ConfigError("--checkpoint.every_fraction: set either every_fraction or every_n_train_steps, not both")
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise ConfigError(f"--checkpoint.every_n_train_steps: must be >= 0, got {every_n_train_steps!r}")
        if save_top_k < -1:
            raise ConfigError(f"--checkpoint.save_top_k: must be >= -1, got {save_top_k!r}")
        # monitoring the step keeps the newest k checkpoints (ModelCheckpoint needs a monitor for k > 1)
        super().__init__(
            dirpath=dirpath, filename=filename, monitor=monitor or "step", mode=mode if monitor else "max",
            save_last=save_last, save_top_k=save_top_k, save_weights_only=save_weights_only,
            every_n_train_steps=every_n_train_steps, verbose=verbose,
            enable_version_counter=False,  # a step re-run after a kill overwrites step=N.ckpt, never step=N-v1.ckpt
            # a step schedule (fixed or a fraction resolved later) replaces the default save-every-epoch
            every_n_epochs=0 if (every_fraction is not None or every_n_train_steps) else None,
        )
        self.every_fraction = every_fraction
        self.export_hf = export_hf
        self._exported: set[int] = set()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a user's own CheckpointIO is kept
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        hf_root = hf_dir(trainer, 0).parent  # trainer.log_dir broadcasts under DDP: every rank calls it
        if trainer.is_global_zero:
            for folder in (Path(self.dirpath) if self.dirpath else None, hf_root):
                _remove_debris(folder)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.every_fraction is not None:
            # resolved here, after the checkpoint restore: estimated_stepping_batches builds the train loader
            total = int(trainer.estimated_stepping_batches)
            self.set_every_n_train_steps(max(1, round(self.every_fraction * total)))
        if self.export_hf and trainer.global_step > 0 and self._has_step_file(trainer.global_step):
            if not hf_dir(trainer, trainer.global_step).is_dir():
                self._export(trainer)  # resumed from a checkpoint whose export the kill interrupted: finish it

    def _has_step_file(self, step: int) -> bool:
        """Whether ``dirpath`` holds the top-k checkpoint ``step=<step>`` (``last.ckpt`` does not count)."""
        names = os.listdir(self.dirpath) if self.dirpath and os.path.isdir(self.dirpath) else []
        return any(m is not None and int(m.group(1)) == step for m in map(_STEP.search, names))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the final weights are always saved, even off the schedule (all ranks run this: collectives are safe)
        self.save_now(trainer)

    def checkpoint_saved(self, trainer: pl.Trainer, filepath: str, last: bool) -> None:
        # exports follow the step files (a last.ckpt alone, as Lightning 2.4/2.5.0 write at epoch ends, gets none)
        if self.export_hf and not last and trainer.global_step not in self._exported:
            self._export(trainer)

    def _export(self, trainer: pl.Trainer) -> None:
        """Write ``hf/step-<global_step>`` on rank 0 (every rank calls: FSDP gathers, log_dir broadcasts)."""
        self._exported.add(trainer.global_step)
        state_dict = _full_state_dict(trainer)  # collective under FSDP: every rank calls it
        path = hf_dir(trainer, trainer.global_step)  # trainer.log_dir broadcasts under DDP: every rank calls it
        if trainer.is_global_zero:
            try:
                export_hf(trainer, trainer.lightning_module, path, state_dict)
            except Exception:  # noqa: BLE001 — an export must never stop training or the other checkpoints
                log.exception("HF export of step %d failed; training continues", trainer.global_step)

    def checkpoint_removed(self, trainer: pl.Trainer, filepath: str) -> None:
        match = _STEP.search(Path(filepath).stem)
        if match and not Path(filepath).stem.startswith(self.CHECKPOINT_NAME_LAST):
            path = hf_dir(trainer, int(match.group(1)))  # a collective under DDP: every rank computes it
            if trainer.is_global_zero:
                shutil.rmtree(path, ignore_errors=True)


def _remove_debris(folder: Path | None) -> None:
    """Delete what killed saves left in ``folder``: temp checkpoint files and half-built export directories."""
    if folder is None or not folder.is_dir():
        return
    for item in folder.iterdir():
        if _DEBRIS.match(item.name):
            log.info("removing %s, left by an interrupted save", item)
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)


def hf_dir(trainer: pl.Trainer, step: int) -> Path:
    """``<trainer.log_dir>/hf/step-<step>`` (the current directory when there is no logger).

    ``trainer.log_dir`` broadcasts rank 0's directory under DDP, so every rank must call this together.

    Args:
        trainer: the running trainer.
        step: global step of the export.
    """
    return Path(trainer.log_dir or ".") / "hf" / f"step-{step}"


def _full_state_dict(trainer: pl.Trainer) -> dict[str, Any] | None:
    """The unsharded HF state dict under FSDP (gathered on all ranks); ``None`` = use the module's own."""
    from lightning.pytorch.strategies import FSDPStrategy

    if not isinstance(trainer.strategy, FSDPStrategy):
        return None
    full = trainer.strategy.lightning_module_state_dict()
    return {k.removeprefix("model."): v for k, v in full.items() if k.startswith("model.")}


def export_hf(trainer: pl.Trainer, pl_module: pl.LightningModule, path: Path, state_dict: dict | None = None) -> Path:
    """Write the HF export of ``pl_module.model`` to ``path`` atomically (temp dir + rename).

    Args:
        trainer: the running trainer (for step, datamodule and config).
        pl_module: the ``LanguageModel`` whose ``.model`` is exported.
        path: final directory, replaced if it exists.
        state_dict: weights to save instead of the module's own (FSDP full state dict).
    """
    from transformers.utils import logging as hf_logging

    model = pl_module.model
    with atomic_directory(path) as tmp:
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # one shard per export: the bar is only noise in the training log
        try:
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        dm = trainer.datamodule
        corpus = getattr(dm, "_corpus", None) if dm is not None else None
        tokenizer_dir = getattr(corpus, "tokenizer_dir", None)
        if tokenizer_dir is not None and Path(tokenizer_dir).is_dir():
            for item in Path(tokenizer_dir).iterdir():
                if item.is_file():
                    shutil.copy2(item, tmp / item.name)
        atomic_write_json(tmp / "hierlatent.json", run_record(trainer, pl_module, corpus))
    return path


def run_record(trainer: pl.Trainer, pl_module: pl.LightningModule, corpus: Any) -> dict[str, Any]:
    """The ``hierlatent.json`` content: step, tokens and the run's configuration."""
    dm = trainer.datamodule
    generator = getattr(dm, "generator", None)
    record: dict[str, Any] = {
        "step": int(trainer.global_step),
        "tokens_seen": int(getattr(pl_module, "tokens_seen", 0)),
        "epoch": int(trainer.current_epoch),
        "model": _plain(dict(pl_module.hparams)),
        "data": _init_args(dm) if dm is not None else {},
    }
    if generator is not None and hasattr(generator, "hparams"):
        record["generator"] = {"class_path": generator.class_path(), "init_args": generator.hparams()}
    if corpus is not None:
        record["corpus"] = str(getattr(corpus, "path", ""))
    return record


def _init_args(obj: Any) -> dict[str, Any]:
    """The constructor arguments of ``obj`` read back from attributes of the same name (the generator aside)."""
    import inspect

    names = [n for n in inspect.signature(type(obj).__init__).parameters if n not in ("self", "generator")]
    return _plain({n: getattr(obj, n) for n in names if hasattr(obj, n)})


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy (tuples -> lists, other objects -> str); drops Lightning's private keys."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key.startswith("_"):
            continue
        if isinstance(value, tuple):
            value = list(value)
        out[key] = value if isinstance(value, (int, float, str, bool, list, dict, type(None))) else str(value)
    return out
