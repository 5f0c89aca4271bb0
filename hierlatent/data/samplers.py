"""Samplers that yield window start offsets: the seeded, rank-invariant training order and the eval shards.

Both subclass ``DistributedSampler`` only so that Lightning (``use_distributed_sampler=True``) leaves them
alone instead of wrapping them; they do their own rank arithmetic and never touch ``torch.distributed``.
Window *position* ``p`` of epoch ``e`` maps to a token offset by a pure function of (seed, e, p) (see
``hierlatent._splitmix``); global step ``s`` uses positions ``[s·W·B, (s+1)·W·B)`` and rank ``r``
the block ``[(s·W + r)·B, (s·W + r + 1)·B)``, so the global batch of a step does not depend on the world
size ``W`` as long as ``W·B`` is fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
from torch.utils.data import DistributedSampler

from hierlatent._splitmix import epoch_key, feistel_permutation, random_offsets

_CHUNK_STEPS = 256  # steps whose offsets are computed in one vectorised call


class TrainWindowSampler(DistributedSampler):
    """Yields this rank's window offsets for one epoch, in global-step order (a resumable, seeded order)."""

    def __init__(
        self,
        n_tokens: int,
        context_window: int,
        batch_size: int,
        *,
        sampling: Literal["contiguous", "random"] = "contiguous",
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
        epoch: int = 0,
        start_position: int = 0,
        epoch_source: Callable[[], int | None] | None = None,
    ) -> None:
        """
        Args:
            n_tokens: tokens in the split.
            context_window: window length T.
            batch_size: per-device batch size B.
            sampling: ``contiguous`` (permuted non-overlapping windows) or ``random`` (random offsets).
            seed: seed of the order.
            num_replicas: world size W.
            rank: this process's global rank.
            drop_last: drop the last incomplete global batch (else split it evenly, padding from the start).
            epoch: epoch of the first iteration.
            start_position: global window position at which the first iteration of ``epoch`` starts
                (resume); a multiple of W·B.
            epoch_source: called at the start of each iteration for its epoch (the trainer's current epoch);
                None or a None result falls back to ``set_epoch``'s value.
        """
        # DistributedSampler.__init__ is not called: it wants a dataset and may query torch.distributed.
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, epoch
        self.shuffle, self.drop_last = True, drop_last
        self.n_tokens, self.context_window, self.batch_size, self.sampling = n_tokens, context_window, batch_size, sampling
        self.n_windows = n_tokens // context_window
        gb = num_replicas * batch_size
        if start_position % gb:
            raise ValueError(f"start_position {start_position} is not a multiple of the global batch {gb}")
        if drop_last or self.n_windows % gb == 0:
            self.steps, self.last_per_rank = self.n_windows // gb, batch_size
        else:
            self.steps = math.ceil(self.n_windows / gb)
            self.last_per_rank = math.ceil((self.n_windows - (self.steps - 1) * gb) / num_replicas)
        self.num_samples = (self.steps - 1) * batch_size + self.last_per_rank if self.steps else 0
        self.total_size = self.num_samples * num_replicas
        self.epoch_source = epoch_source
        self._resume: tuple[int, int] | None = (epoch, start_position // gb) if start_position else None
        self.iter_epoch: int | None = None  # epoch of the latest iteration (what a checkpoint must record)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the next iteration when no ``epoch_source`` is given (outside a trainer).

        Args:
            epoch: epoch number.
        """
        self.epoch = epoch

    def pending_start(self) -> tuple[int, int] | None:
        """(epoch, global window position) where the next iteration resumes, if a resume is pending."""
        if self._resume is None:
            return None
        return self._resume[0], self._resume[1] * self.num_replicas * self.batch_size

    def positions(self, first_step: int, last_step: int) -> np.ndarray:
        """This rank's window positions for global steps ``[first_step, last_step)``, flattened in order.

        Args:
            first_step: first global step.
            last_step: end (exclusive) global step; clipped to the epoch.
        """
        W, B, r = self.num_replicas, self.batch_size, self.rank
        full_end = min(last_step, self.steps if self.last_per_rank == B else self.steps - 1)
        steps = np.arange(first_step, max(first_step, full_end), dtype=np.int64)
        pos = ((steps * W + r) * B)[:, None] + np.arange(B)  # [steps, B]
        parts = [pos.reshape(-1)]
        if last_step >= self.steps > full_end:  # the incomplete last global batch, split evenly over ranks
            q = self.last_per_rank
            parts.append(((self.steps - 1) * W * B + r * q + np.arange(q)) % self.n_windows)
        return np.concatenate(parts)

    def offsets(self, positions: np.ndarray, epoch: int) -> np.ndarray:
        """Token offsets of the windows at ``positions`` of ``epoch``.

        Args:
            positions: window positions within the epoch.
            epoch: epoch number (keys the permutation or hash).
        """
        if self.sampling == "contiguous":
            ids = feistel_permutation(positions, self.n_windows, epoch_key(self.seed, epoch, 0))
            return ids * self.context_window
        return random_offsets(positions, self.n_tokens - self.context_window + 1, epoch_key(self.seed, epoch, 1))

    def __iter__(self) -> Iterator[int]:
        # Epoch and start are read now, not lazily in the generator: Lightning may call set_epoch after it
        # creates the iterator. Lightning's set_epoch value is not used under a trainer: after a restore from
        # an epoch-end checkpoint it runs one ahead of trainer.current_epoch (Lightning 2.6), which would
        # change the order relative to an uninterrupted run.
        if self._resume is not None:
            (epoch, start), self._resume = self._resume, None
        else:
            source = self.epoch_source() if self.epoch_source is not None else None
            epoch, start = (self.epoch if source is None else source), 0
        self.iter_epoch = epoch
        return self._iterate(epoch, start)

    def _iterate(self, epoch: int, start: int) -> Iterator[int]:
        for first in range(start, self.steps, _CHUNK_STEPS):
            yield from self.offsets(self.positions(first, first + _CHUNK_STEPS), epoch).tolist()


class EvalWindowSampler(DistributedSampler):
    """Evaluation windows: ``n`` non-overlapping windows spread evenly over the split, dealt round-robin to ranks.

    ``n`` is rounded down to a multiple of the world size so every rank gets the same count without
    duplicates (Lightning needs equal counts for synced metrics).
    """

    def __init__(self, n_tokens: int, context_window: int, n: int | None = None, num_replicas: int = 1, rank: int = 0):
        """
        Args:
            n_tokens: tokens in the split.
            context_window: window length T.
            n: cap on the number of windows (None: all non-overlapping windows).
            num_replicas: world size W.
            rank: this process's global rank.
        """
        self.num_replicas, self.rank, self.epoch, self.shuffle, self.drop_last, self.seed = num_replicas, rank, 0, False, True, 0
        self.context_window = context_window
        self.n_windows = n_tokens // context_window
        n = self.n_windows if n is None else min(n, self.n_windows)
        self.total_size = n - n % num_replicas
        self.num_samples = self.total_size // num_replicas

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        chosen = np.arange(self.total_size, dtype=np.int64) * self.n_windows // max(self.total_size, 1)
        return iter((chosen[self.rank :: self.num_replicas] * self.context_window).tolist())
