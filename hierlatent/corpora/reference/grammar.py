"""Recursive per-sentence reference sampler for ``GrammarCorpus``: same random stream, so the same shard."""

from __future__ import annotations

import numpy as np

from hierlatent.corpora.grammar import GrammarCorpus


class _TooLong(Exception):
    pass


def reference_shard(gen: GrammarCorpus, split: str, index: int, context=None) -> np.ndarray:
    """``gen.generate_shard(split, index)`` rebuilt with plain recursion, one sentence at a time."""
    g = gen.grammar
    rs = np.random.RandomState(gen.shard_seed(split, index))
    first = index * gen.documents_per_shard
    n_docs = min(gen.documents_per_shard, gen._n_docs(split) - first)
    eos = len(g.terminals)
    latent = [n in gen.latent_categories for n in g.nonterminals]
    perm = list(range(len(g.rule_cdf)))
    out: list[int] = []

    def expand(nt: int, sentence: list[int]) -> None:
        u = rs.random_sample()
        rules = range(g.rule_start[nt], g.rule_start[nt + 1])
        r = next((r for r in rules if u < g.rule_cdf[r]), rules[-1])
        if latent[nt]:
            r = perm[r]
        for sym in g.rhs[g.rhs_start[r]:g.rhs_start[r + 1]]:
            if sym >= 0:
                if len(sentence) == gen.max_sentence_length:
                    raise _TooLong
                sentence.append(int(sym))
            else:
                expand(-int(sym) - 1, sentence)

    for _ in range(n_docs):
        for nt, is_latent in enumerate(latent):
            if is_latent:
                a = g.rule_start[nt]
                for i in range(g.rule_start[nt + 1] - a - 1, 0, -1):
                    j = int(rs.random_sample() * (i + 1))
                    perm[a + i], perm[a + j] = perm[a + j], perm[a + i]
        for _ in range(gen.repetitions * gen.sentences_per_document):
            while True:
                sentence: list[int] = []
                try:
                    expand(0, sentence)
                    break
                except _TooLong:
                    continue
            out += sentence + [eos]
    return np.array(out, dtype=np.int64)
