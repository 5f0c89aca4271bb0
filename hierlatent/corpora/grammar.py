"""Corpora from any PCFG in NLTK notation (``S -> NP VP [0.7]``), with an optional document-level latent.

The grammar is parsed with NLTK, checked (``_grammar_compile``), and compiled to integer rule tables that a
numba kernel expands with an explicit stack (pre-order, left to right), so sampling costs a few nanoseconds
per symbol instead of a Python call per node.

Documents: ``sentences_per_document`` sentences, each ending in ``[EOS]``. With ``latent_categories``
(lexical nonterminals such as ``N`` or ``V``), every base document draws a uniform random permutation of
each category's rules: the rule the grammar picks *by probability rank* emits the terminal at the permuted
position, so each document has its own frequent nouns/verbs (as in the PCFG-documents corpus). Each base
document is written ``repetitions`` times in a row with the same permutations and fresh sentences.

Randomness: each shard seeds NumPy's Mersenne Twister (numba's ``np.random`` is the same generator) from
(seed, split, shard), so ``reference/grammar.py`` reproduces a shard exactly with a recursive sampler.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from hierlatent.corpora._grammar_compile import compile_grammar
from hierlatent.corpora.base import SPLIT_IDS, CorpusGenerator, Vocabulary, check_int, entropy, tail_vocabulary
from hierlatent.errors import GrammarError


class GrammarCorpus(CorpusGenerator):
    """Sentences sampled from a user PCFG file, grouped into documents with an optional latent permutation."""

    name = "grammar"

    def __init__(
        self,
        grammar_file: Path,
        n_documents: int = 100_000,
        n_test_documents: int = 1_000,
        sentences_per_document: int = 16,
        repetitions: int = 1,
        latent_categories: list[str] = [],
        max_sentence_length: int = 512,
        documents_per_shard: int = 20_000,
        seed: int = 0,
    ) -> None:
        """
        Args:
            grammar_file: PCFG in NLTK notation (``A -> B C [0.7] | 'word' [0.3]``); the first rule's lhs is the start.
            n_documents: training base documents.
            n_test_documents: held-out base documents.
            sentences_per_document: sentences per document.
            repetitions: copies of each base document (same latent permutations, fresh sentences), written in a row.
            latent_categories: lexical nonterminals whose terminals are permuted per document (the document latent).
            max_sentence_length: a sentence longer than this is discarded and redrawn.
            documents_per_shard: base documents per shard file.
            seed: master seed.
        """
        super().__init__(seed)
        self.grammar_file = Path(grammar_file).expanduser()
        self.n_documents = check_int("n_documents", n_documents)
        self.n_test_documents = check_int("n_test_documents", n_test_documents)
        self.sentences_per_document = check_int("sentences_per_document", sentences_per_document)
        self.repetitions = check_int("repetitions", repetitions)
        self.latent_categories = list(latent_categories)
        self.max_sentence_length = check_int("max_sentence_length", max_sentence_length)
        self.documents_per_shard = check_int("documents_per_shard", documents_per_shard)
        self.grammar = compile_grammar(self.grammar_file, self.latent_categories)  # checks before any work
        self._latent = np.array([n in self.latent_categories for n in self.grammar.nonterminals], dtype=np.bool_)

    def hparams(self):
        params = super().hparams()
        params["grammar_sha256"] = _sha256(self.grammar_file)  # the file's content, not just its path, keys the cache
        return params

    def vocabulary(self) -> Vocabulary:
        return tail_vocabulary(self.grammar.terminals)

    def _n_docs(self, split: str) -> int:
        return self.n_documents if split == "train" else self.n_test_documents

    def shard_counts(self) -> dict[str, int]:
        return {s: -(-self._n_docs(s) // self.documents_per_shard) for s in ("train", "test")}

    def expected_sentence_length(self) -> float:
        """Expected terminals per sentence (without EOS), from the expected-offspring equations."""
        g = self.grammar
        counts = np.linalg.solve(np.eye(len(g.nonterminals)) - g.offspring.T, np.eye(len(g.nonterminals))[0])
        return float(counts @ g.direct_terminals)

    def expected_tokens(self, split: str) -> int:
        per_doc = self.sentences_per_document * self.repetitions * (self.expected_sentence_length() + 1)
        return int(self._n_docs(split) * per_doc)

    def shard_seed(self, split: str, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, SPLIT_IDS[split], index]).generate_state(1)[0])

    def generate_shard(self, split: str, index: int, context=None) -> np.ndarray:
        first = index * self.documents_per_shard
        n_docs = min(self.documents_per_shard, self._n_docs(split) - first)
        g = self.grammar
        return _sample_documents(
            self.shard_seed(split, index), n_docs, self.repetitions, self.sentences_per_document,
            self.max_sentence_length, len(g.terminals), g.rule_start, g.rule_cdf, g.rhs_start, g.rhs, self._latent,
        )

    def reference_losses(self) -> dict[str, float]:
        """Per-token entropies (nats) from the expected-count equations of the grammar.

        ``derivational_entropy``: entropy of the derivation per token (EOS included). It equals the string
        entropy rate for an unambiguous grammar and bounds it from above otherwise; with ``latent_categories``
        it is the loss of a model that knows each document's permutation (a bound: repetitions lower it further).
        ``unigram_entropy``: cross-entropy of the best context-free unigram model (permutations averaged out).
        """
        g = self.grammar
        n = len(g.nonterminals)
        counts = np.linalg.solve(np.eye(n) - g.offspring.T, np.eye(n)[0])  # expected expansions of each nonterminal
        ent = np.array([entropy(g.rule_prob[g.rule_start[i]:g.rule_start[i + 1]]) for i in range(n)])
        tokens = self.expected_sentence_length() + 1
        unigram = np.zeros(len(g.terminals) + 1)
        for i in range(n):
            for r in range(g.rule_start[i], g.rule_start[i + 1]):
                syms = g.rhs[g.rhs_start[r]:g.rhs_start[r + 1]]
                for t in syms[syms >= 0]:
                    if self._latent[i]:  # averaged over permutations: uniform over the category's terminals
                        cat = g.rhs[g.rhs_start[g.rule_start[i]:g.rule_start[i + 1]]]
                        unigram[cat] += counts[i] * g.rule_prob[r] / len(cat)
                    else:
                        unigram[t] += counts[i] * g.rule_prob[r]
        unigram[-1] = 1.0  # one EOS per sentence
        return {"derivational_entropy": float(counts @ ent / tokens), "unigram_entropy": entropy(unigram / unigram.sum())}


def _sha256(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise GrammarError(f"grammar_file: cannot read {path} ({exc.strerror})") from exc


@numba.njit(cache=True)
def _sample_documents(seed, n_docs, repetitions, n_sentences, max_len, eos, rule_start, rule_cdf, rhs_start, rhs, latent):
    np.random.seed(seed)
    n_nt = len(rule_start) - 1
    out = np.empty(1 << 16, dtype=np.int64)
    n_out = 0
    sentence = np.empty(max_len + 1, dtype=np.int64)
    stack = np.empty(64, dtype=np.int64)
    perm = np.arange(len(rule_cdf))  # per document: rule r of a latent lhs emits the terminal of rule perm[r]
    for _ in range(n_docs):
        for nt in range(n_nt):
            if latent[nt]:  # Fisher-Yates over the lhs's rules
                a = rule_start[nt]
                for i in range(rule_start[nt + 1] - a - 1, 0, -1):
                    j = int(np.random.random() * (i + 1))
                    perm[a + i], perm[a + j] = perm[a + j], perm[a + i]
        for _ in range(repetitions * n_sentences):
            length = -1
            while length < 0:  # redraw sentences longer than max_len
                length, stack = _sample_sentence(sentence, stack, max_len, rule_start, rule_cdf, rhs_start, rhs, latent, perm)
            while n_out + length + 1 > len(out):
                out = np.concatenate((out, np.empty(len(out), dtype=np.int64)))
            out[n_out:n_out + length] = sentence[:length]
            out[n_out + length] = eos
            n_out += length + 1
    return out[:n_out]


@numba.njit(cache=True)
def _sample_sentence(sentence, stack, max_len, rule_start, rule_cdf, rhs_start, rhs, latent, perm):
    """Expand the start symbol depth-first, left to right; returns (length, stack) or (-1, stack) if too long."""
    stack[0] = -1
    top, length = 1, 0
    while top > 0:
        top -= 1
        sym = stack[top]
        if sym >= 0:
            if length == max_len:
                return -1, stack
            sentence[length] = sym
            length += 1
            continue
        nt = -sym - 1
        u = np.random.random()
        r = rule_start[nt]
        while r < rule_start[nt + 1] - 1 and u >= rule_cdf[r]:
            r += 1
        if latent[nt]:
            r = perm[r]
        a, b = rhs_start[r], rhs_start[r + 1]
        while top + (b - a) > len(stack):
            stack = np.concatenate((stack, np.empty(len(stack), dtype=np.int64)))
        for k in range(b - 1, a - 1, -1):  # push right to left so the leftmost symbol is expanded first
            stack[top] = rhs[k]
            top += 1
    return length, stack


