"""Per-sentence pure-Python reference for ``PCFGDocuments``: the same random stream, so the same shard.

Everything is plain Python: splitmix64 on ints masked to 64 bits, Fisher-Yates on lists, ``bisect`` on
cumulative sums, and an exact ``set`` of test-sentence tuples for the dedupe (the fast path uses hashes;
the two agree unless a hash false-match happens, which the tests' small corpora make vanishingly rare).
It is the tests' oracle and the benchmarks' baseline.
"""

from __future__ import annotations

import bisect
import itertools

import numpy as np

from hierlatent._splitmix import epoch_key, feistel_permutation
from hierlatent.corpora.base import SPLIT_IDS
from hierlatent.corpora.pcfg import MAX_TRIES, PCFGDocuments
from hierlatent.errors import CorpusError

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _finalise(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def mix(x: int) -> int:
    """splitmix64 of one state: the keyed hash that derives stream keys."""
    return _finalise((x + _GOLDEN) & _M64)


class Stream:
    """A splitmix64 stream: the state advances by the golden increment, outputs are finalised states."""

    def __init__(self, key: int) -> None:
        self.state = key

    def next(self) -> int:
        self.state = (self.state + _GOLDEN) & _M64
        return _finalise(self.state)

    def uniform(self) -> float:
        """A float in [0, 1) from the top 53 bits."""
        return (self.next() >> 11) * 2.0 ** -53

    def below(self, n: int) -> int:
        """An integer in [0, n) by 32-bit multiply-high."""
        return ((self.next() >> 32) * n) >> 32


def permutation(doc_key: int, role: int, n: int) -> list[int]:
    """Forward Fisher-Yates of ``range(n)``: step i swaps position i with a uniform j in [i, n).

    Each 64-bit output serves two steps: its high 32 bits step i (even), its low 32 bits step i + 1.
    """
    stream = Stream(mix(doc_key ^ role))
    perm = list(range(n))
    for i in range(n - 1):
        if i % 2 == 0:
            x = stream.next()
            j = i + (((x >> 32) * (n - i)) >> 32)
        else:
            j = i + (((x & 0xFFFFFFFF) * (n - i)) >> 32)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def _cdf(probs) -> list[float]:
    cdf = list(itertools.accumulate(float(p) for p in probs))
    cdf[-1] = 1.0
    return cdf


def document_ids(gen: PCFGDocuments, split: str, index: int) -> list[tuple[int, int]]:
    """(base, copy) per document of the shard: positions in order, or through the keyed Feistel permutation."""
    r, n_docs = gen.repetitions, (gen.n_documents if split == "train" else gen.n_test_documents)
    first = index * gen.documents_per_shard * r
    positions = list(range(first, min(first + gen.documents_per_shard * r, n_docs * r)))
    if split == "train" and gen.shuffle_train:
        positions = feistel_permutation(np.array(positions), n_docs * r, epoch_key(gen.seed, SPLIT_IDS[split], 1))
    return [(int(p) // r, int(p) % r) for p in positions]


def sentence_set(gen: PCFGDocuments, test_tokens) -> set[tuple[int, ...]]:
    """Every EOS-terminated sentence of the test tokens as a tuple (EOS excluded)."""
    out, sentence = set(), []
    for t in map(int, test_tokens):
        if t == gen.eos_id:
            out.add(tuple(sentence))
            sentence = []
        else:
            sentence.append(t)
    return out


def sentence(gen: PCFGDocuments, stream: Stream, perms: list[list[int]], cdfs: list[list[float]],
             m_cdf: list[float]) -> list[int]:
    """One sentence (no EOS): the form, then (S V O) the number of extra clauses, then the tokens left to right."""
    offsets = [0, gen.n_subjects, gen.n_subjects + gen.n_verbs]
    first_connector = gen.n_subjects + gen.n_verbs + gen.n_objects

    def slot(role: int) -> int:
        return offsets[role] + perms[role][bisect.bisect_right(cdfs[role], stream.uniform())]

    if stream.uniform() < gen.p_svo:
        m = bisect.bisect_right(m_cdf, stream.uniform())
        words = [slot(0), slot(1), slot(2)]
        for _ in range(m):
            words.append(first_connector + stream.below(gen.n_connectors))
            words += [slot(0), slot(1), slot(2)]
        return words
    return [slot(1), slot(0), slot(2)]


def reference_shard(gen: PCFGDocuments, split: str, index: int,
                    test_sentences: set[tuple[int, ...]] | None = None) -> np.ndarray:
    """``gen.generate_shard(split, index, ...)`` rebuilt one document and one sentence at a time.

    Args:
        gen: the generator whose shard to rebuild.
        split: "train" or "test".
        index: shard index.
        test_sentences: ``sentence_set`` of the whole test split, for a train shard with ``dedupe_test_sentences``.
    """
    sizes = [gen.n_subjects, gen.n_verbs, gen.n_objects]
    eos = sum(sizes) + gen.n_connectors
    cdfs = [_cdf(gen.zipf_probs(n)) for n in sizes]
    m_cdf = _cdf(gen.extra_clauses)
    dedupe = split == "train" and gen.dedupe_test_sentences
    if dedupe and test_sentences is None:
        raise CorpusError("reference: a train shard with dedupe_test_sentences needs test_sentences")
    forbidden = test_sentences if dedupe else set()
    split_key = epoch_key(gen.seed, SPLIT_IDS[split], 0)
    out: list[int] = []
    for base, copy in document_ids(gen, split, index):
        doc_key = mix(split_key ^ base)
        perms = [permutation(doc_key, role, n) for role, n in enumerate(sizes)]
        copy_key = mix(doc_key ^ (3 + copy))
        for j in range(gen.sentences_per_document):
            stream = Stream(mix(copy_key ^ j))  # each sentence slot has its own stream
            for _ in range(MAX_TRIES):  # redraw (from the same stream) while the sentence is in the test split
                words = sentence(gen, stream, perms, cdfs, m_cdf)
                if tuple(words) not in forbidden:
                    break
            else:
                raise CorpusError("reference: no training sentence outside the test split")
            out += words + [eos]
    return np.array(out, dtype=np.int64)
