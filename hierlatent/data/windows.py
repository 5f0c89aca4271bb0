"""Reading fixed-length token windows from a split: the concatenation of its shards, read through memmaps.

A window may span a shard boundary. Shards are opened lazily once per process, so a ``TokenWindows``
pickles cheaply into dataloader workers (memmaps are reopened there, never sent).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hierlatent.errors import ConfigError


# -- reading windows ------------------------------------------------------------------------------
def _open_corpus_split(corpus_path: str, split: str) -> list[np.ndarray]:
    from hierlatent.corpora.store import open_corpus

    return list(open_corpus(Path(corpus_path)).memmaps(split))


def _memmap_files(paths: tuple[str, ...], dtype: str) -> list[np.ndarray]:
    # np.memmap cannot map an empty file: an empty shard is an empty array
    return [np.memmap(p, dtype=dtype, mode="r") if Path(p).stat().st_size else np.zeros(0, dtype) for p in paths]


def _given_arrays(arrays: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    return list(arrays)


class TokenWindows(Dataset):
    """Windows of ``context_window`` tokens at given start offsets of one split (its shards concatenated).

    Indexed by *token offset*: ``dataset[o]`` is tokens ``[o, o + T)`` of the split. ``__getitems__`` reads
    a whole batch into one array (the ``DataLoader`` uses it). Shards are opened lazily, once per process,
    so the dataset pickles cheaply into spawned workers (memmaps are not sent).
    """

    def __init__(self, open_shards: Callable[[], list[np.ndarray]], lengths: Sequence[int], context_window: int):
        """
        Args:
            open_shards: picklable callable returning the split's shards (1-D arrays or memmaps) in order.
            lengths: number of tokens of each shard.
            context_window: window length T in tokens.
        """
        self.open_shards = open_shards
        self.bounds = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
        self.context_window = int(context_window)
        self._shards: list[np.ndarray] | None = None

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], context_window: int) -> TokenWindows:
        """Windows over in-memory 1-D arrays (tests, small corpora)."""
        arrays = tuple(np.asarray(a) for a in arrays)
        return cls(functools.partial(_given_arrays, arrays), [len(a) for a in arrays], context_window)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path], dtype: str | np.dtype, context_window: int) -> TokenWindows:
        """Windows over raw token files (one shard each, in order), memory-mapped lazily per process."""
        dtype = np.dtype(dtype)
        lengths = [Path(p).stat().st_size // dtype.itemsize for p in paths]
        opener = functools.partial(_memmap_files, tuple(str(p) for p in paths), dtype.str)
        return cls(opener, lengths, context_window)

    @classmethod
    def from_corpus(cls, corpus: Any, split: str, context_window: int) -> TokenWindows:
        """Windows over a split of a ``hierlatent.corpora.store.Corpus`` (memmaps opened lazily per process)."""
        lengths = [len(m) for m in corpus.memmaps(split)]
        return cls(functools.partial(_open_corpus_split, str(corpus.path), split), lengths, context_window)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shards": None}

    @property
    def n_tokens(self) -> int:
        return int(self.bounds[-1])

    def __len__(self) -> int:
        """Number of non-overlapping windows."""
        return self.n_tokens // self.context_window

    def shards(self) -> list[np.ndarray]:
        if self._shards is None:
            self._shards = self.open_shards()
        return self._shards

    def read(self, offsets: Sequence[int] | np.ndarray) -> np.ndarray:
        """Tokens of the windows starting at ``offsets``: array [len(offsets), T] of the shard dtype.

        Args:
            offsets: start offsets in the split, each in ``[0, n_tokens - T]``.
        """
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        T, shards = self.context_window, self.shards()
        if offsets.size and (offsets.min() < 0 or offsets.max() + T > self.n_tokens):
            raise IndexError(f"window offsets must lie in [0, {self.n_tokens - T}], got {offsets.min()}..{offsets.max()}")
        out = np.empty((offsets.size, T), dtype=shards[0].dtype if shards else np.int64)
        first = np.searchsorted(self.bounds, offsets, side="right") - 1
        for row, (off, s) in enumerate(zip(offsets.tolist(), first.tolist())):
            pos, filled = off - int(self.bounds[s]), 0
            while filled < T:  # usually one slice; more only when the window spans shard boundaries
                chunk = shards[s][pos : pos + T - filled]
                out[row, filled : filled + len(chunk)] = chunk
                filled, s, pos = filled + len(chunk), s + 1, 0
        return out

    def __getitem__(self, offset: int) -> torch.Tensor:
        return torch.from_numpy(self.read([offset])[0].astype(np.int64))

    def __getitems__(self, offsets: list[int]) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.from_numpy(self.read(offsets).astype(np.int64))}  # [B, T]


class RawWindows(Dataset):
    """A ``TokenWindows`` whose batches stay raw ``[B, T]`` arrays of the shard dtype (for ``WindowLoader``).

    Dataloader workers send them through a pipe as small pickles; int64 tensors would travel through a
    new shared-memory segment per batch, several times slower for LM-sized batches (see the benchmark).
    """

    def __init__(self, windows: TokenWindows):
        """
        Args:
            windows: the windows to read.
        """
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, offset: int) -> np.ndarray:
        return self.windows.read([offset])[0]

    def __getitems__(self, offsets: list[int]) -> np.ndarray:
        return self.windows.read(offsets)  # [B, T]


def sample_windows(windows: TokenWindows, n: int, seed: int) -> torch.Tensor:
    """``n`` windows at seeded random token offsets (the same on every rank and run): LongTensor[n, T].

    Args:
        windows: the split to read.
        n: number of windows.
        seed: seed of the offsets.
    """
    generator = torch.Generator().manual_seed(int(seed))
    high = windows.n_tokens - windows.context_window + 1
    offsets = torch.randint(0, high, (n,), generator=generator).numpy()
    return torch.from_numpy(windows.read(offsets).astype(np.int64))


def first_windows(windows: TokenWindows, n: int) -> torch.Tensor:
    """The first ``n`` consecutive windows of the split, offsets 0, T, 2T, …: LongTensor[min(n, len), T].

    The research code's held-out Hydra windows: it reads the test split as a stream and keeps its first
    ``n`` context-length chunks (docs/research.md#stimuli). Fewer when the split holds fewer whole windows.

    Args:
        windows: the split to read.
        n: number of windows.
    """
    count = min(int(n), len(windows))
    if count < 1:
        raise ValueError(f"the split holds {windows.n_tokens} tokens: not one window of {windows.context_window}")
    offsets = np.arange(count, dtype=np.int64) * windows.context_window
    return torch.from_numpy(windows.read(offsets).astype(np.int64))


#: the flags ``check_fills`` names: the data module's own fields (checked on the opened corpus) ...
DATA_FLAGS = ("data.context_window", "data.batch_size", "data.val_windows")
#: ... and the command line's (checked on the expected corpus: the data window is linked from the model's)
CLI_FLAGS = ("--model.context_window", "--data.batch_size", "--data.val_windows")


def check_fills(
    train_tokens: int, test_tokens: int, context_window: int, *, world: int, batch_size: int,
    drop_last: bool = True, val_windows: int | None = None, expected: bool = False,
    flags: tuple[str, str, str] = DATA_FLAGS,
) -> None:
    """The one rule: a split must fill one batch per rank (train) and one validation window per rank (test).

    The CLI applies it to the corpus the generator *expects* (before any generation), the data module to
    the corpus it opened (the world size may have changed since). ConfigError naming the flag otherwise.

    Args:
        train_tokens: tokens of the train split.
        test_tokens: tokens of the test split.
        context_window: window length T in tokens.
        world: number of ranks.
        batch_size: windows per batch per rank.
        drop_last: the last incomplete global batch is dropped (then one whole global batch is needed).
        val_windows: cap on the validation windows (None: all whole windows of the test split).
        expected: the token counts are the generator's expectation, not an opened corpus (wording only).
        flags: names of the context window, batch size and validation-window flags, for the message.
    """
    T, holds = context_window, "is expected to hold ~" if expected else "holds "
    context_flag, batch_flag, val_flag = flags
    need = world * batch_size if drop_last else world
    if train_tokens // T < need:
        raise ConfigError(
            f"{context_flag}: the train split {holds}{train_tokens} tokens = {train_tokens // T} windows of {T},"
            f" fewer than the {need} needed for one batch on each of {world} rank(s) ({batch_flag}={batch_size});"
            " use a smaller context window or batch size, or a larger corpus"
        )
    n_test = test_tokens // T
    n_val = n_test if val_windows is None else min(val_windows, n_test)
    if n_val < world:
        raise ConfigError(
            f"{context_flag if n_test < world else val_flag}: the test split {holds}{test_tokens} tokens, giving"
            f" {n_val} validation windows of {T}, fewer than one per rank ({world} ranks)"
        )
