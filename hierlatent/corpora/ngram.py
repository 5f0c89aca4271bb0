"""The paper's variable-order n-gram baseline corpus (docs/research.md#ngram) and its exact Bayes-optimal loss (docs/research.md#reference-loss).

Vocabulary: words ``t0`` … ``t{n_words-1}`` (ids 0 … n_words−1), then ``[EOS]``, ``[UNK]``, ``[PAD]``
(paper: 999 words, EOS 999, UNK 1000, PAD 1001, vocabulary 1002).

Tables, drawn once from the seed: context c (0 … n_contexts−1) has exponent
e_c = max(exponent_floor, Normal(exponent_mean, exponent_std)) (``np.random.default_rng([seed, 0x6E67])``)
and a Zipf law over ranks r = 1 … n_words+1 with rank r ↦ token r−1, so the last rank is EOS. The rule "EOS
rejected" means a draw that lands on EOS is redrawn, i.e. the law is renormalised over the words:
P(w | c) = (w+1)^(−e_c) / Σ_{v<n_words} (v+1)^(−e_c). Rejection sampling and this renormalised law are the same
distribution, so we sample the renormalised law directly (one uniform per token, no redraw loop).
Order i of ``orders`` has probability ∝ 1/(i+1)^order_decay.

A sentence: L = min_length + ⌊u·extra_length⌋; for each position p = 0 … L−1 an order n is drawn, the history
window is the last min(n, p) tokens of the sentence (the empty window for p = 0), its context is
hash(window) mod n_contexts and the token is drawn from that context; then ``[EOS]``. Nothing crosses
sentences.

Hash of a window x_1 … x_k (token ids): the polynomial h = Σ_i (x_i + 1)·B^(k−i) mod 2^64 with the odd
constant B = 0xD6E8FEB86659FD93, then context = mix64(h + k·0x632BE59BD9B4E019 mod 2^64) mod n_contexts,
mix64 being SplitMix64's finaliser (xor-shift 30, ×0xBF58476D1CE4E5B9, xor-shift 27, ×0x94D049BB133111EB,
xor-shift 31). The +1 keeps token 0 visible and the length term separates windows of different lengths;
the finaliser spreads every input bit over the low bits the modulus keeps. The empty window hashes to 0.
With prefix hashes H_p = H_{p−1}·B + x_p + 1 the window hash is H_p − H_{p−n}·B^n: O(1) per position.

Randomness is counter-based, so any sentence can be regenerated alone and the corpus does not depend on
``sentences_per_shard``: sentence s of a split (train 1, test 2) has the SplitMix64 start state
K = mix64(mix64(mix64(seed) + split) + s); draw j is u_j = (mix64(K + (j+1)·0x9E3779B97F4A7C15) >> 11)·2^−53.
Draw 0 gives L, draw 1+2p the order of position p, draw 2+2p its token (inverse CDF: the first word whose
cumulative probability exceeds u). ``reference/ngram.py`` rebuilds shards from these definitions in Python.

Reference loss (``reference_losses``, nats/token over the generated test split, every token counted: each
sentence's first token and its ``[EOS]`` included). The true next-token law given the p tokens of the
sentence so far is exact: orders are drawn independently of everything, so the order posterior is the prior,
and the predictive is the mixture Σ_o P(o)·P(w | context(o)) (orders whose windows coincide, e.g. all orders
≥ p, add up), times 1 − h_p; ``[EOS]`` has the length hazard h_p = P(L = p | L ≥ p) (0 below min_length,
1/(min_length+extra_length−p) from there). It assumes the model knows where the sentence began (true after
the previous ``[EOS]`` is in its window; a window that starts mid-sentence can do worse).
The loss depends strongly on the seed (at the defaults 1.64 … 3.03 nats over seeds 0 … 11, seed 0: 2.95):
Zipf draws make token 0 frequent, so the few contexts of windows like [0] and [0, 0] carry much of the
corpus, and their exponents decide the entropy.
"""

from __future__ import annotations

import math

import numpy as np

from hierlatent.corpora import _ngram_kernels as K
from hierlatent.corpora.base import (SPLIT_IDS, CorpusGenerator, Vocabulary, check_int, check_nonnegative,
                                     check_positive, tail_vocabulary)
from hierlatent.errors import ConfigError

GUIDE_SIZE = 1024  # guide-table entries per context (a power of two, so k/GUIDE_SIZE <= u is exact)


class NGramCorpus(CorpusGenerator):
    """Sentences from a variable-order hashed-context Zipf n-gram model (the paper's "N-gram" corpus)."""

    name = "ngram"
    split_order = ("test", "train")

    def __init__(
        self,
        n_words: int = 999,
        n_contexts: int = 1000,
        exponent_mean: float = 2.0,
        exponent_std: float = 1.2,
        exponent_floor: float = 1.2,
        min_length: int = 10,
        extra_length: int = 100,
        orders: list[int] = [1, 2, 4, 8, 16, 32, 64, 128],
        order_decay: float = 1.5,
        n_sentences: int = 2_000_000,
        n_test_sentences: int = 10_000,
        sentences_per_shard: int = 100_000,
        seed: int = 0,
    ) -> None:
        """
        Args:
            n_words: number of word tokens (ids 0 … n_words−1; EOS, UNK, PAD follow). Paper: 999.
            n_contexts: number of hashed contexts, each with its own Zipf exponent. Paper: 1000.
            exponent_mean: mean of the Normal the Zipf exponents are drawn from. Paper: 2.0.
            exponent_std: standard deviation of that Normal (0 gives every context the same exponent). Paper: 1.2.
            exponent_floor: exponents below this are raised to it. Paper: 1.2.
            min_length: shortest sentence (words, EOS not counted). Paper: 10.
            extra_length: sentence length is min_length + Uniform{0 … extra_length−1}. Paper: 100.
            orders: history-window lengths an order is drawn from. Paper: [1, 2, 4, …, 128].
            order_decay: order i of the list (from 0) has probability ∝ 1/(i+1)^order_decay. Paper: 1.5.
            n_sentences: training sentences (paper: 5 billion, about 300B tokens; default ~120M tokens).
            n_test_sentences: held-out test sentences (the reference loss is computed on them).
            sentences_per_shard: sentences per shard file (the content does not depend on it).
            seed: master seed (context exponents and sentences).
        """
        super().__init__(seed)
        self.n_words = check_int("n_words", n_words)
        self.n_contexts = check_int("n_contexts", n_contexts)
        self.exponent_mean = check_positive("exponent_mean", exponent_mean)
        self.exponent_std = check_nonnegative("exponent_std", exponent_std)
        self.exponent_floor = check_positive("exponent_floor", exponent_floor)
        self.min_length = check_int("min_length", min_length)
        self.extra_length = check_int("extra_length", extra_length)
        self.orders = _check_orders(orders)
        self.order_decay = check_nonnegative("order_decay", order_decay)
        self.n_sentences = check_int("n_sentences", n_sentences)
        self.n_test_sentences = check_int("n_test_sentences", n_test_sentences)
        self.sentences_per_shard = check_int("sentences_per_shard", sentences_per_shard)
        self._tables: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict:
        # shipped to every worker task: leave the ~20 MB tables behind (they reach a worker once, as the split's context)
        return {**self.__dict__, "_tables": None}

    # -- layout ---------------------------------------------------------------------------------------
    @property
    def eos_id(self) -> int:
        return self.n_words

    def vocabulary(self) -> Vocabulary:
        return tail_vocabulary([f"t{i}" for i in range(self.n_words)])

    def _n_sent(self, split: str) -> int:
        return self.n_sentences if split == "train" else self.n_test_sentences

    def shard_counts(self) -> dict[str, int]:
        return {s: -(-self._n_sent(s) // self.sentences_per_shard) for s in ("train", "test")}

    def expected_sentence_tokens(self) -> float:
        """Mean tokens per sentence, EOS included."""
        return self.min_length + (self.extra_length - 1) / 2 + 1

    def expected_tokens(self, split: str) -> int:
        return int(round(self._n_sent(split) * self.expected_sentence_tokens()))

    # -- tables ---------------------------------------------------------------------------------------
    def tables(self) -> dict[str, np.ndarray]:
        """exponents [C], pmf [C, W] and cdf [C, W] of each context's word law, guide [C, GUIDE_SIZE], order probs and cdf."""
        if self._tables is None:
            rng = np.random.default_rng([self.seed, 0x6E67])
            exponents = np.maximum(rng.normal(self.exponent_mean, self.exponent_std, self.n_contexts), self.exponent_floor)
            weights = np.arange(1, self.n_words + 1, dtype=np.float64)[None, :] ** -exponents[:, None]
            cum = np.cumsum(weights, axis=1)
            cdf = cum / cum[:, -1:]
            cdf[:, -1] = 1.0  # exact: every u < 1 finds a word
            order_w = 1.0 / np.arange(1, len(self.orders) + 1, dtype=np.float64) ** self.order_decay
            order_cdf = np.cumsum(order_w / order_w.sum())
            order_cdf[-1] = 1.0
            self._tables = {
                "exponents": exponents, "pmf": weights / cum[:, -1:], "cdf": cdf,
                "guide": _guide(cdf), "orders": np.array(self.orders, dtype=np.int64),
                "order_probs": order_w / order_w.sum(), "order_cdf": order_cdf,
            }
        return self._tables

    def prepare_context(self, corpus_dir, split: str) -> dict[str, np.ndarray]:
        """The tables: the store builds them once per split and hands them to each generation worker once."""
        return self.tables()

    # -- generation -----------------------------------------------------------------------------------
    def shard_sentences(self, split: str, index: int) -> range:
        """Indices (within the split) of the sentences of one shard."""
        first = index * self.sentences_per_shard
        return range(first, min(first + self.sentences_per_shard, self._n_sent(split)))

    def generate_shard(self, split: str, index: int, context: dict | None = None) -> np.ndarray:
        t = context if context is not None else self.tables()
        sents = self.shard_sentences(split, index)
        out = np.empty(len(sents) * (self.min_length + self.extra_length), dtype=self.vocabulary().dtype)
        n = K.generate(out, self.seed, SPLIT_IDS[split], sents.start, len(sents), self.min_length, self.extra_length,
                       t["orders"], t["order_cdf"], t["cdf"], t["guide"], self.eos_id)
        return out[:n]

    # -- reference loss ------------------------------------------------------------------------------
    def token_nll(self, tokens: np.ndarray) -> np.ndarray:
        """Bayes-optimal −log p of each token of a stream of whole sentences (see the module docstring)."""
        t = self.tables()
        return K.token_nll(np.asarray(tokens, dtype=np.int64), self.min_length, self.extra_length, t["orders"],
                           t["order_probs"], t["pmf"], self.eos_id)

    def predictive_entropy(self, tokens: np.ndarray) -> np.ndarray:
        """Entropy of the Bayes predictive at each token position of a stream of whole sentences."""
        t = self.tables()
        return K.predictive_entropy(np.asarray(tokens, dtype=np.int64), self.min_length, self.extra_length,
                                    t["orders"], t["order_probs"], t["pmf"], self.eos_id)

    def reference_losses(self) -> dict[str, float]:
        """Bayes-optimal loss over the test split (nats/token; every token, EOS and first tokens included).

        ``bayes_optimal``: mean −log p of the test tokens under the true predictive (what a perfect model
        scores on this test split); ``bayes_optimal_stderr``: its standard error, treating sentences as the
        independent units; ``bayes_optimal_entropy``: the mean entropy of the true predictive at the same
        positions (the expectation of the first, with the noise of the drawn tokens averaged out);
        ``bayes_optimal_words`` / ``bayes_optimal_eos``: the mean −log p of word tokens / of EOS tokens.
        """
        tokens = np.concatenate([self.generate_shard("test", i) for i in range(self.shard_counts()["test"])])
        nll = self.token_nll(tokens)
        eos = tokens == self.eos_id
        sentence = np.cumsum(eos) - eos  # sentence index of every token
        per_sent = np.bincount(sentence, weights=nll)
        lengths = np.bincount(sentence).astype(np.float64)
        mean = per_sent.sum() / lengths.sum()
        resid = per_sent - mean * lengths  # ratio-estimator residuals
        m = len(lengths)
        stderr = math.sqrt((resid**2).sum() / max(m * (m - 1), 1)) / lengths.mean()
        return {
            "bayes_optimal": float(mean), "bayes_optimal_stderr": float(stderr),
            "bayes_optimal_entropy": float(self.predictive_entropy(tokens).mean()),
            "bayes_optimal_words": float(nll[~eos].mean()), "bayes_optimal_eos": float(nll[eos].mean()),
        }


def _guide(cdf: np.ndarray) -> np.ndarray:
    """The guide table, as int16 when the word ids fit (half the cache footprint of int32)."""
    guide = K.build_guide(cdf, GUIDE_SIZE)
    return guide.astype(np.int16) if cdf.shape[1] <= np.iinfo(np.int16).max else guide


def _check_orders(orders) -> list[int]:
    """A non-empty list of distinct positive integers."""
    if isinstance(orders, (str, bytes)) or not hasattr(orders, "__iter__"):
        raise ConfigError(f"orders: must be a non-empty list of integers >= 1, got {orders!r}")
    checked = [check_int(f"orders[{i}]", n) for i, n in enumerate(orders)]
    if not checked:
        raise ConfigError("orders: must be a non-empty list of integers >= 1, got []")
    if len(set(checked)) != len(checked):
        raise ConfigError(f"orders: must be distinct, got {checked}")
    return checked
