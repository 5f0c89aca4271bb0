"""A tiny deterministic ``CorpusGenerator`` for store and pipeline tests (not a research corpus)."""

from __future__ import annotations

import os

import numpy as np

from hierlatent.corpora.base import CorpusGenerator, Vocabulary, check_int, tail_vocabulary
from hierlatent.errors import CorpusError


class CountingCorpus(CorpusGenerator):
    """Shard i of a split holds documents ``[i*k, ..., EOS]`` with a seeded length; vocabulary of ``n_words`` + 3."""

    name = "counting"

    def __init__(self, n_words: int = 50, n_shards: int = 4, shard_docs: int = 20, seed: int = 0, fail_shard: int = -1):
        """
        Args:
            n_words: number of word tokens.
            n_shards: train shards (test has 1).
            shard_docs: documents per shard.
            seed: master seed.
            fail_shard: raise in this train shard (tests of error propagation); -1 = never.
        """
        super().__init__(seed)
        self.n_words = check_int("n_words", n_words)
        self.n_shards = check_int("n_shards", n_shards)
        self.shard_docs = check_int("shard_docs", shard_docs)
        self.fail_shard = fail_shard

    def vocabulary(self) -> Vocabulary:
        return tail_vocabulary([f"w{i}" for i in range(self.n_words)])

    def shard_counts(self) -> dict[str, int]:
        return {"test": 1, "train": self.n_shards}

    def generate_shard(self, split, index, context=None):
        if split == "train" and index == self.fail_shard:
            raise CorpusError(f"shard {index} failed on purpose")
        rng = np.random.default_rng([self.seed, split == "train", index])
        docs = [np.append(rng.integers(0, self.n_words, rng.integers(3, 9)), self.n_words) for _ in range(self.shard_docs)]
        return np.concatenate(docs)

    def expected_tokens(self, split):
        return 7 * self.shard_docs * self.shard_counts()[split]

    def reference_losses(self):
        return {"uniform": float(np.log(self.n_words))}


class ContextCorpus(CountingCorpus):
    """``CountingCorpus`` whose shards need their split's context; ``calls`` records each ``prepare_context``."""

    name = "context"
    calls: list[tuple[str, int]] = []  # (split, pid) in this process; a test replaces the list

    def prepare_context(self, corpus_dir, split):
        type(self).calls.append((split, os.getpid()))
        return f"context of {split}"

    def generate_shard(self, split, index, context=None):
        if context != f"context of {split}":
            raise CorpusError(f"shard {split}/{index} got the context {context!r}")
        return super().generate_shard(split, index, context)
