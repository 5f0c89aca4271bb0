"""Shared fixtures for the data-pipeline tests: a position-coded corpus and a module that records its batches.

Token ``p`` of the train split is ``p`` itself (test split: ``TEST_BASE + p``), so the first token of a
window *is* its offset: tests can check exactly which windows each rank, worker and step saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from hierlatent.corpora.base import CorpusGenerator, Vocabulary, tail_vocabulary
from hierlatent.data import CorpusDataModule, TokenWindows

TEST_BASE = 40000
TRAIN_SHARDS = (700, 0, 1301, 999)  # uneven, one empty: windows span shard boundaries
TEST_SHARDS = (500, 623)


class PositionCorpus(CorpusGenerator):
    """Test generator: token = position in the split (train) or ``TEST_BASE`` + position (test)."""

    name = "position"

    def __init__(self, seed: int = 0) -> None:
        """
        Args:
            seed: unused (the corpus is a fixed function of position).
        """
        super().__init__(seed)

    def vocabulary(self) -> Vocabulary:
        return tail_vocabulary([f"t{i}" for i in range(TEST_BASE + sum(TEST_SHARDS))])

    def shard_counts(self) -> dict[str, int]:
        return {"train": len(TRAIN_SHARDS), "test": len(TEST_SHARDS)}

    def generate_shard(self, split: str, index: int, context: object = None) -> np.ndarray:
        sizes = TRAIN_SHARDS if split == "train" else TEST_SHARDS
        base = 0 if split == "train" else TEST_BASE
        start = base + sum(sizes[:index])
        return np.arange(start, start + sizes[index], dtype=np.uint16)

    def expected_tokens(self, split: str) -> int:
        return sum(TRAIN_SHARDS if split == "train" else TEST_SHARDS)

    def reference_losses(self) -> dict[str, float]:
        return {"zero": 0.0}


def split_arrays(split: str) -> list[np.ndarray]:
    gen = PositionCorpus()
    return [gen.generate_shard(split, i) for i in range(gen.shard_counts()[split])]


def attached_module(**kwargs) -> CorpusDataModule:
    """A data module over in-memory ``PositionCorpus`` arrays (no corpus store needed)."""
    dm = CorpusDataModule(PositionCorpus(), **kwargs)
    dm.attach(
        TokenWindows.from_arrays(split_arrays("train"), dm.context_window),
        TokenWindows.from_arrays(split_arrays("test"), dm.context_window),
    )
    return dm


class Recorder(pl.LightningModule):
    """Trivial model that records the first token (= offset) of every window it trains on, per step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []
        self.val_seen: list[int] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids = batch["input_ids"]
        assert ids.dtype == torch.long and ids.ndim == 2
        self.seen.append(ids[:, 0].tolist())
        return (self.w - ids.float().mean()).pow(2)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_seen.extend(batch["input_ids"][:, 0].tolist())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit_recorder(
    tmp_path: Path, dm: CorpusDataModule, max_steps: int, ckpt_path: Path | None = None, save: bool = False,
    **trainer_kwargs: Any,
) -> list[list[int]]:
    """Fit a ``Recorder`` on ``dm`` for ``max_steps`` on CPU; returns its per-step window offsets.

    Args:
        tmp_path: root directory of the run.
        dm: the data module.
        max_steps: training steps.
        ckpt_path: checkpoint to resume from.
        save: checkpoint every step (``steps/``) and at every epoch end (``ends/``).
        trainer_kwargs: more ``Trainer`` arguments (``callbacks`` are added to the checkpointers).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks = trainer_kwargs.pop("callbacks", [])
    if save:  # every step (saved in on_train_batch_end) and every epoch end (saved in on_train_epoch_end)
        callbacks = callbacks + [
            ModelCheckpoint(dirpath=tmp_path / "steps", every_n_train_steps=1, save_top_k=-1),
            ModelCheckpoint(dirpath=tmp_path / "ends", filename="end-{epoch}", save_on_train_epoch_end=True, save_top_k=-1),
        ]
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=tmp_path,
        num_sanity_val_steps=0, limit_val_batches=2, **trainer_kwargs,
    )
    model = Recorder()
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen
