"""Two-level toy hierarchy (docs/research.md#toy), the paper's theory model, and its flat ablation.

Each sequence draws a top state Z0 ~ Cat(π0) (K0 states, π0 uniform). Each of its ``segments`` segments
draws Z1 | Z0 ~ Cat(π1[Z0]) (K1 states) and emits ``evidence_per_segment`` evidence tokens
e ~ emit[Z1], the cue token ``[QUERY]`` and one query token q ~ softmax(α·E0[Z0] + (1−α)·E1[Z1]).
A sequence ends with ``[EOS]``; sequences are concatenated.

Tables, drawn once from the seed (documented so results are comparable across tools):

* π1[z0] ~ Dirichlet(concentration · b[z0]), with b[z0] = (1 − block_leak) · uniform over the *block* of z0
  (the K1/K0 sub-states ``z1`` with ``z1 * K0 // K1 == z0``) + block_leak · uniform over all K1 states.
  So each top state prefers its own block of sub-states (docs/research.md#toy: "Dirichlet concentration ~20").
* emit[z1] ~ Dirichlet(emission_concentration · 1) over the evidence tokens (sparse for small values).
* E0[z0], E1[z1] ~ Normal(0, embedding_scale²) over the query tokens.

``flat=True`` is the ablation: the query is drawn from the Z0-marginalised table
q̄[z0] = Σ_z1 π1[z0, z1] · softmax(α·E0[z0] + (1−α)·E1[z1]), so it carries no information about the
segment's Z1 beyond what Z0 says (its marginal given Z0 is unchanged).

Reference loss (exact, docs/research.md#reference-loss): the Bayes-optimal predictor is the exact posterior predictive, computed
by a forward pass over (Z0, Z1) along each sequence (``bayes_losses``). ``reference_losses()`` reports
its mean log-loss per token over the generated test split ("bayes_optimal", all tokens: ``[QUERY]`` and
``[EOS]`` are deterministic and cost 0) and over query tokens only ("bayes_optimal_query"), computed
exactly for those tokens (the only randomness is which test tokens were drawn), with the standard error.
It assumes the whole sequence is in context; a window that starts mid-sequence can do slightly worse.
"""

from __future__ import annotations

import numpy as np

from hierlatent.corpora.base import (SPLIT_IDS, CorpusGenerator, Vocabulary, check_int, check_positive,
                                     check_probability, tail_vocabulary)
from hierlatent.errors import ConfigError


class ToyHierarchy(CorpusGenerator):
    """Two-level latent hierarchy: evidence tokens reveal Z1 (and Z0), a query token depends on both."""

    name = "toy"
    split_order = ("test", "train")

    def __init__(
        self,
        n_top: int = 4,
        n_sub: int = 16,
        n_evidence_tokens: int = 64,
        n_query_tokens: int = 32,
        segments: int = 8,
        evidence_per_segment: int = 4,
        alpha: float = 0.7,
        concentration: float = 20.0,
        block_leak: float = 0.05,
        emission_concentration: float = 0.2,
        embedding_scale: float = 3.0,
        flat: bool = False,
        n_sequences: int = 200_000,
        n_test_sequences: int = 5_000,
        sequences_per_shard: int = 50_000,
        seed: int = 0,
    ) -> None:
        """
        Args:
            n_top: K0, number of top-level states Z0.
            n_sub: K1, number of segment states Z1 (a multiple of n_top: each Z0 owns a block of them).
            n_evidence_tokens: number of evidence token types.
            n_query_tokens: number of query token types.
            segments: segments per sequence.
            evidence_per_segment: evidence tokens per segment.
            alpha: weight α of the Z0 table in the query logits (1 − α for Z1).
            concentration: total Dirichlet concentration of each π1[z0].
            block_leak: share of π1's Dirichlet base measure spread outside the Z0's own block.
            emission_concentration: Dirichlet concentration of each evidence emission row.
            embedding_scale: standard deviation of the query logit tables E0, E1.
            flat: ablation: draw the query from the Z0-marginalised table (no Z1 information).
            n_sequences: training sequences.
            n_test_sequences: held-out test sequences.
            sequences_per_shard: sequences per shard file.
            seed: master seed (tables and sequences).
        """
        super().__init__(seed)
        self.n_top = check_int("n_top", n_top)
        self.n_sub = check_int("n_sub", n_sub)
        if self.n_sub % self.n_top:
            raise ConfigError(f"n_sub: must be a multiple of n_top={self.n_top}, got {n_sub}")
        self.n_evidence_tokens = check_int("n_evidence_tokens", n_evidence_tokens)
        self.n_query_tokens = check_int("n_query_tokens", n_query_tokens)
        self.segments = check_int("segments", segments)
        self.evidence_per_segment = check_int("evidence_per_segment", evidence_per_segment)
        self.alpha = check_probability("alpha", alpha)
        self.concentration = check_positive("concentration", concentration)
        self.block_leak = check_probability("block_leak", block_leak)
        self.emission_concentration = check_positive("emission_concentration", emission_concentration)
        self.embedding_scale = check_positive("embedding_scale", embedding_scale)
        self.flat = bool(flat)
        self.n_sequences = check_int("n_sequences", n_sequences)
        self.n_test_sequences = check_int("n_test_sequences", n_test_sequences)
        self.sequences_per_shard = check_int("sequences_per_shard", sequences_per_shard)
        self._tables: dict[str, np.ndarray] | None = None

    # -- layout ---------------------------------------------------------------------------------------
    @property
    def query_offset(self) -> int:
        return self.n_evidence_tokens

    @property
    def cue_id(self) -> int:
        return self.n_evidence_tokens + self.n_query_tokens

    @property
    def seq_len(self) -> int:
        return self.segments * (self.evidence_per_segment + 2) + 1

    def vocabulary(self) -> Vocabulary:
        tokens = [f"e{i}" for i in range(self.n_evidence_tokens)] + [f"q{i}" for i in range(self.n_query_tokens)]
        c = self.cue_id
        return tail_vocabulary(tokens + ["[QUERY]"], n_content=c, special={"query": c},
                               evidence=(0, self.n_evidence_tokens), query=(self.query_offset, c), cue=(c, c + 1))

    def _n_seq(self, split: str) -> int:
        return self.n_sequences if split == "train" else self.n_test_sequences

    def shard_counts(self) -> dict[str, int]:
        return {s: -(-self._n_seq(s) // self.sequences_per_shard) for s in ("train", "test")}

    def expected_tokens(self, split: str) -> int:
        return self._n_seq(split) * self.seq_len

    # -- tables ---------------------------------------------------------------------------------------
    def tables(self) -> dict[str, np.ndarray]:
        """π0 [K0], π1 [K0, K1], emit [K1, Ne], query [K0, K1, Nq] (the table the query is drawn from)."""
        if self._tables is None:
            rng = np.random.default_rng([self.seed, 0x70])
            k0, k1 = self.n_top, self.n_sub
            block = (np.arange(k1)[None, :] * k0 // k1) == np.arange(k0)[:, None]  # [K0, K1]
            base = (1 - self.block_leak) * block / block.sum(1, keepdims=True) + self.block_leak / k1
            pi1 = np.stack([rng.dirichlet(self.concentration * b) for b in base])
            emit = rng.dirichlet(np.full(self.n_evidence_tokens, self.emission_concentration), size=k1)
            e0 = rng.normal(0, self.embedding_scale, (k0, self.n_query_tokens))
            e1 = rng.normal(0, self.embedding_scale, (k1, self.n_query_tokens))
            logits = self.alpha * e0[:, None, :] + (1 - self.alpha) * e1[None, :, :]  # [K0, K1, Nq]
            query = np.exp(logits - logits.max(-1, keepdims=True))
            query /= query.sum(-1, keepdims=True)
            if self.flat:
                marginal = np.einsum("ab,abq->aq", pi1, query)  # [K0, Nq]
                query = np.broadcast_to(marginal[:, None, :], query.shape).copy()
            self._tables = {"pi0": np.full(k0, 1 / k0), "pi1": pi1, "emit": emit, "query": query}
        return self._tables

    # -- generation -----------------------------------------------------------------------------------
    def draws(self, split: str, index: int) -> dict[str, np.ndarray]:
        """The uniform draws of one shard (shared with the per-sequence reference)."""
        first = index * self.sequences_per_shard
        n = min(self.sequences_per_shard, self._n_seq(split) - first)
        rng = np.random.default_rng([self.seed, SPLIT_IDS[split], index])
        g, e = self.segments, self.evidence_per_segment
        return {"z0": rng.random(n), "z1": rng.random((n, g)), "ev": rng.random((n, g, e)), "q": rng.random((n, g))}

    def generate_shard(self, split: str, index: int, context=None) -> np.ndarray:
        t, u = self.tables(), self.draws(split, index)
        k1 = self.n_sub
        z0 = _inverse_cdf(t["pi0"][None, :], np.zeros(len(u["z0"]), dtype=np.int64), u["z0"])  # [S]
        z1 = _inverse_cdf(t["pi1"], z0[:, None], u["z1"])  # [S, G]
        ev = _inverse_cdf(t["emit"], z1[:, :, None], u["ev"])  # [S, G, E]
        q = _inverse_cdf(t["query"].reshape(-1, self.n_query_tokens), z0[:, None] * k1 + z1, u["q"])  # [S, G]
        q += self.query_offset
        n, g = z1.shape
        cue = np.full((n, g, 1), self.cue_id)
        body = np.concatenate([ev, cue, q[:, :, None]], axis=2).reshape(n, -1)  # [S, G*(E+2)]
        eos = np.full((n, 1), self.cue_id + 1)
        return np.concatenate([body, eos], axis=1).reshape(-1)

    # -- reference loss ------------------------------------------------------------------------------
    def reference_losses(self) -> dict[str, float]:
        tokens = np.concatenate([self.generate_shard("test", i) for i in range(self.shard_counts()["test"])])
        all_nll, query_nll = bayes_losses(self, tokens.reshape(-1, self.seq_len))
        return {
            "bayes_optimal": float(all_nll.mean()),
            "bayes_optimal_stderr": float(all_nll.std() / np.sqrt(all_nll.size)),
            "bayes_optimal_query": float(query_nll.mean()),
        }


def _inverse_cdf(table: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws by inverse CDF: row ``rows[...]`` of ``table[R, K]`` for each uniform ``u[...]``.

    One ``searchsorted`` for all draws: row r's CDF is shifted by r, so the stacked CDFs stay sorted.
    """
    r, k = table.shape
    cdf = np.cumsum(table, axis=1)
    cdf[:, -1] = 1.0  # guard against rounding: the last category closes the row
    stacked = (cdf + np.arange(r)[:, None]).ravel()
    idx = np.searchsorted(stacked, u + rows, side="right") - rows * k
    return np.minimum(idx, k - 1)


def bayes_losses(gen: ToyHierarchy, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior-predictive log-loss of every token of ``seqs`` [S, seq_len] (forward algorithm).

    Returns (nll of every token [S, seq_len], nll of the query tokens [S, segments]).
    """
    t = gen.tables()
    n, e = seqs.shape[0], gen.evidence_per_segment
    log_z0 = np.log(np.broadcast_to(t["pi0"], (n, gen.n_top)))  # log P(z0 | previous segments)
    nll = np.zeros(seqs.shape)
    q_nll = np.zeros((n, gen.segments))
    for s in range(gen.segments):
        start = s * (e + 2)
        w = log_z0[:, :, None] + np.log(t["pi1"])[None]  # [S, K0, K1] joint log-weights within the segment
        for j in range(e):
            x = seqs[:, start + j]
            pred = _normalise(w)  # [S, K0, K1]
            p_x = np.einsum("sab,sb->s", pred, t["emit"][:, x].T)
            nll[:, start + j] = -np.log(p_x)
            w = w + np.log(t["emit"][:, x].T)[:, None, :]
        q = seqs[:, start + e + 1] - gen.query_offset
        pred = _normalise(w)
        p_q_given = t["query"][:, :, q].transpose(2, 0, 1)  # [S, K0, K1]
        nll[:, start + e + 1] = q_nll[:, s] = -np.log((pred * p_q_given).sum((1, 2)))
        post = w + np.log(p_q_given)
        log_z0 = np.logaddexp.reduce(post, axis=2)
        log_z0 -= np.logaddexp.reduce(log_z0, axis=1, keepdims=True)
    return nll, q_nll


def _normalise(logw: np.ndarray) -> np.ndarray:
    w = np.exp(logw - logw.max(axis=(1, 2), keepdims=True))
    return w / w.sum(axis=(1, 2), keepdims=True)
