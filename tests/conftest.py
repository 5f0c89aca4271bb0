"""Shared pytest fixtures: an isolated corpus cache and a tiny in-memory data module.

``tmp_cache`` points ``HIERLATENT_CACHE`` at a fresh temp directory (also inherited by subprocesses
started from the test), so no test reads or writes the user's cache.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierlatent.corpora.base import CorpusGenerator, Vocabulary


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A fresh ``HIERLATENT_CACHE`` directory for this test; returns its path."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HIERLATENT_CACHE", str(cache))
    return cache


class RandomTokens(CorpusGenerator):
    """Test generator: i.i.d. uniform tokens (learnable only as a unigram), 3 special tokens at the end."""

    name = "random-tokens"

    def __init__(self, seed: int = 0, vocab: int = 61, train_tokens: int = 20000, test_tokens: int = 4000) -> None:
        """
        Args:
            seed: master seed.
            vocab: number of ordinary tokens.
            train_tokens: tokens in the train split (one shard).
            test_tokens: tokens in the test split (one shard).
        """
        super().__init__(seed)
        self.vocab, self.train_tokens, self.test_tokens = vocab, train_tokens, test_tokens

    def vocabulary(self) -> Vocabulary:
        tokens = tuple(f"t{i}" for i in range(self.vocab)) + ("[EOS]", "[UNK]", "[PAD]")
        return Vocabulary(tokens, {"eos": self.vocab, "unk": self.vocab + 1, "pad": self.vocab + 2})

    def shard_counts(self) -> dict[str, int]:
        return {"train": 1, "test": 1}

    def generate_shard(self, split: str, index: int, context: object = None) -> np.ndarray:
        rng = np.random.default_rng([self.seed, split == "train", index])
        return rng.integers(0, self.vocab, self.expected_tokens(split), dtype=np.uint16)

    def expected_tokens(self, split: str) -> int:
        return self.train_tokens if split == "train" else self.test_tokens

    def reference_losses(self) -> dict[str, float]:
        return {"uniform": float(np.log(self.vocab))}


@pytest.fixture
def tiny_datamodule():
    """Factory: ``tiny_datamodule(context_window=16, batch_size=4, **kw)`` -> CorpusDataModule over RandomTokens arrays."""
    from hierlatent.data import CorpusDataModule, TokenWindows

    def make(context_window: int = 16, batch_size: int = 4, seed: int = 0, **kwargs) -> CorpusDataModule:
        gen = RandomTokens(seed=seed)
        dm = CorpusDataModule(gen, context_window=context_window, batch_size=batch_size, **kwargs)
        dm.attach(
            TokenWindows.from_arrays([gen.generate_shard("train", 0)], context_window),
            TokenWindows.from_arrays([gen.generate_shard("test", 0)], context_window),
        )
        return dm

    return make
