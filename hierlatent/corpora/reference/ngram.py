"""Per-sentence pure-Python reference for ``NGramCorpus``: the tests' oracle and the benchmark's baseline.

Everything is rebuilt from the definitions in the module docstring of ``hierlatent/corpora/ngram.py``, one
sentence and one token at a time, with Python integers masked to 64 bits: the SplitMix64 stream, the window
hash computed from the window's tokens (not from prefix hashes), ``bisect`` for inverse-CDF draws, and a
brute-force Bayes predictive that enumerates sentence lengths and orders. Only the probability tables
(``gen.tables()``: the exponents' CDFs, shared so both sides compare bit-identical floats) come from the
generator.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from hierlatent.corpora.base import SPLIT_IDS
from hierlatent.corpora.ngram import NGramCorpus

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
HASH_BASE = 0xD6E8FEB86659FD93
LENGTH_SALT = 0x632BE59BD9B4E019


def mix64(z: int) -> int:
    """SplitMix64's finaliser on a Python int."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class Stream:
    """The counter-based uniform stream of one sentence: ``next()`` returns draws 0, 1, 2, ..."""

    def __init__(self, seed: int, split_id: int, sentence: int) -> None:
        self.key = mix64((mix64((mix64(seed) + split_id) & MASK) + sentence) & MASK)
        self.j = 0

    def next(self) -> float:
        self.j += 1
        z = mix64((self.key + self.j * GAMMA) & MASK)
        return (z >> 11) * 2.0**-53


def context(window: list[int], n_contexts: int) -> int:
    """Context id of a history window: polynomial hash of (token + 1), length salt, finaliser, modulus."""
    h = 0
    for tok in window:
        h = (h * HASH_BASE + int(tok) + 1) & MASK
    return mix64((h + len(window) * LENGTH_SALT) & MASK) % n_contexts


def _draw(cdf: list[float], u: float) -> int:
    return min(bisect.bisect_right(cdf, u), len(cdf) - 1)


def reference_sentence(gen: NGramCorpus, split: str, sentence: int, rows: dict | None = None) -> list[int]:
    """Sentence ``sentence`` of ``split`` (EOS included), one token at a time."""
    t = gen.tables()
    rows = {} if rows is None else rows  # context -> CDF as a list (bisect on lists is fast)
    order_cdf = list(t["order_cdf"])
    rs = Stream(gen.seed, SPLIT_IDS[split], sentence)
    length = gen.min_length + int(rs.next() * gen.extra_length)
    out: list[int] = []
    for _ in range(length):
        order = gen.orders[_draw(order_cdf, rs.next())]
        window = out[max(0, len(out) - order):]  # the last `order` tokens, or the whole prefix when shorter
        c = context(window, gen.n_contexts)
        if c not in rows:
            rows[c] = list(t["cdf"][c])
        out.append(_draw(rows[c], rs.next()))
    return out + [gen.eos_id]


def reference_shard(gen: NGramCorpus, split: str, index: int, context=None) -> np.ndarray:
    """``gen.generate_shard(split, index)`` rebuilt sentence by sentence."""
    rows: dict = {}
    out: list[int] = []
    for s in gen.shard_sentences(split, index):
        out += reference_sentence(gen, split, s, rows)
    return np.array(out, dtype=np.int64)


def brute_force_predictive(gen: NGramCorpus, prefix: list[int]) -> list[float]:
    """The exact next-token law after ``prefix`` (words of the current sentence): a list over words, then EOS.

    Enumerates every sentence length L consistent with the prefix (L >= len(prefix)) and every order, with
    Zipf laws recomputed from the exponents in Python. Slow; tiny configs only.
    """
    p = len(prefix)
    exps = gen.tables()["exponents"]
    lengths = range(gen.min_length, gen.min_length + gen.extra_length)
    alive = [L for L in lengths if L >= p]  # uniform prior restricted to the lengths not yet ruled out
    p_eos = sum(1 for L in alive if L == p) / len(alive)
    weights = [1.0 / (i + 1) ** gen.order_decay for i in range(len(gen.orders))]
    words = [0.0] * gen.n_words
    for n, w_o in zip(gen.orders, weights):
        c = context(prefix[max(0, p - n):], gen.n_contexts)
        zipf = [(r + 1) ** -exps[c] for r in range(gen.n_words + 1)]  # ranks 1..n_words+1, the last is EOS
        kept = sum(zipf[: gen.n_words])  # EOS rejected: renormalise over the words
        for w in range(gen.n_words):
            words[w] += w_o / sum(weights) * zipf[w] / kept
    return [(1 - p_eos) * q for q in words] + [p_eos]


def brute_force_nll(gen: NGramCorpus, sentence: list[int]) -> list[float]:
    """−log p of every token of one sentence (EOS included) under ``brute_force_predictive``."""
    out = []
    for i, tok in enumerate(sentence):
        law = brute_force_predictive(gen, [int(x) for x in sentence[:i]])
        out.append(-math.log(law[int(tok)]))
    return out
