"""The ``DataLoader`` side of the data module: token arrays to tensors, pinning, and worker lifetime.

``WindowLoader`` reads ``RawWindows`` (workers ship 2-byte tokens; the int64 conversion and pinning happen in
the consuming process) and gives each worker a ``worker_init_fn`` that ties it to the training process.
``TrainLoader`` is the same loader marked resumable for Lightning; the position itself lives in
``CorpusDataModule.state_dict`` (``hierlatent.data.module``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from hierlatent._proc import worker_init
from hierlatent.data.windows import RawWindows, TokenWindows


def _identity(batch: Any) -> Any:
    """``collate_fn``: ``RawWindows.__getitems__`` already returns the collated batch."""
    return batch


class WindowLoader(DataLoader):
    """``DataLoader`` over ``RawWindows``: batches arrive as token arrays and leave as ``{"input_ids": LongTensor[B, T]}``.

    The int64 conversion (and pinning) happens here, in the consuming process, so workers ship 2-byte tokens.
    With ``num_workers > 0`` and no ``worker_init_fn`` given, each worker dies with the process that made it.
    """

    def __init__(self, windows: TokenWindows, *, pin_memory: bool = False, **kwargs: Any):
        """
        Args:
            windows: windows to read.
            pin_memory: pin each batch (when CUDA is available).
            kwargs: ``DataLoader`` arguments (sampler, batch_size, num_workers, ...).
        """
        if kwargs.get("num_workers") and kwargs.get("worker_init_fn") is None:
            kwargs["worker_init_fn"] = functools.partial(_init_loader_worker, os.getpid())
        super().__init__(RawWindows(windows), collate_fn=_identity, **kwargs)
        self.pin = pin_memory and torch.cuda.is_available()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for tokens in super().__iter__():
            ids = torch.from_numpy(tokens.astype(np.int64))  # [B, T]
            yield {"input_ids": ids.pin_memory() if self.pin else ids}


class TrainLoader(WindowLoader):
    """The train ``DataLoader``, marked resumable for Lightning.

    The resume position lives in ``CorpusDataModule.state_dict`` (Lightning restores it before it builds this
    loader); these methods only tell Lightning's fit loop that the loader resumes mid-epoch, so it does not
    warn that it cannot.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


def _init_loader_worker(parent_pid: int, worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: die with the training process (a ``kill -9`` of it leaves no worker behind,
    even one blocked in a read), then seed as Lightning would have (it adds its own only when none is set)."""
    worker_init(parent_pid)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
