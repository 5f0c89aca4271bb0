"""The paper's hierarchical "PCFG documents" corpus (docs/research.md#pcfg) and its reference losses (docs/research.md#reference-loss).

Vocabulary (defaults): subjects 0-299, verbs 300-599, objects 600-899, connectors 900-999, ``[EOS]`` 1000,
``[UNK]`` 1001, ``[PAD]`` 1002; the offsets follow the configured sizes in that order.

A *base document* draws one uniform random permutation per role (subjects, verbs, objects). Every role slot
draws a rank r ~ Zipf(N, s) and emits the token at position r of the role's permutation, so each document
has its own frequent subjects, verbs and objects. A document is sections x paragraphs x sentences sentences
(no marker tokens); a sentence is ``S V O`` followed by m extra clauses ``C S V O`` (probability ``p_svo``,
m ~ ``extra_clauses``, C uniform) or else ``V S O``, and ends with ``[EOS]``. Documents are concatenated.

Repetitions and order: each base document is written ``repetitions`` times (same permutations, fresh
sentences). The test split keeps a base document's copies contiguous. The train split is a keyed Feistel
permutation of the ``n_documents * repetitions`` (base, copy) pairs: shard i holds output positions
``[i*D*R, (i+1)*D*R)`` (D = documents_per_shard, R = repetitions) and position p holds pair
``feistel(p)``, so copies scatter over the whole split while each shard stays a pure function of
(config, split, index) that any worker computes alone.

Randomness: counter-based splitmix64 streams keyed by (seed, split, base document, role or copy, sentence
slot), see ``_pcfg_kernels``; ``reference/pcfg.py`` rebuilds every shard from the same draws in plain Python.

Test/train disjointness: the test split is generated first (``split_order``); ``prepare_context`` for the
train split hashes every test sentence into a compact table and a training sentence found there is
rejected and redrawn (see ``SentenceTable``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hierlatent._splitmix import epoch_key, feistel_permutation, splitmix64
from hierlatent.corpora import _pcfg_kernels as K
from hierlatent.corpora.base import (SPLIT_IDS, CorpusGenerator, Vocabulary, check_distribution, check_int,
                                     check_positive, check_probability, entropy, tail_vocabulary)
from hierlatent.corpora.integrity import shard_path
from hierlatent.errors import ConfigError, CorpusError

MAX_TRIES = 100_000  # consecutive rejected draws before a training sentence is declared impossible
MAX_BITMAP_BITS = 2**30  # 128 MB: above it the test table hashes the 3-token sentences too


class SentenceTable(NamedTuple):
    """The test split's sentences, compact enough for every worker to hold (about 50 MB at paper scale).

    A 3-token sentence (V S O, or S V O without extra clauses) is one bit of ``bitmap``, indexed by its
    (form, subject, verb, object): exact. A longer sentence sets the bit of its S V O head, which rejects
    most never-seen sentences with one access, and is stored as a 64-bit hash: bucket ``hash >> shift``
    (``starts`` gives each bucket's range) holding 32-bit fingerprints. A training sentence whose hash
    matches bucket and fingerprint of a test sentence is rejected; a false match (probability about
    2**-31 per lookup) only costs a harmless extra redraw of a sentence that was not in the test split.
    Without the bitmap (``3 * n_subjects * n_verbs * n_objects`` bits over ``MAX_BITMAP_BITS``) every
    sentence is hashed. A named tuple, so the numba kernels take it as it is.
    """

    use_bitmap: bool
    bitmap: np.ndarray
    shift: int
    starts: np.ndarray
    fingerprints: np.ndarray

    @classmethod
    def build(cls, gen: PCFGDocuments, test_shards: list[np.ndarray]) -> SentenceTable:
        n_bits = 3 * int(np.prod(gen.sizes))
        use_bitmap = n_bits <= MAX_BITMAP_BITS
        bitmap = np.zeros((n_bits + 7) // 8 if use_bitmap else 1, dtype=np.uint8)
        hashes = [K.index_sentences(s, gen.eos_id, gen.offsets, gen.sizes, bitmap, use_bitmap) for s in test_shards]
        h = np.sort(np.concatenate(hashes or [np.zeros(0, dtype=np.uint64)]))  # np.unique is 100x slower here
        h = h[np.concatenate([[True], h[1:] != h[:-1]])] if len(h) else h
        bits = max(1, math.ceil(math.log2(max(len(h), 2))) - 1)  # 1 to 2 sentences per bucket on average
        counts = np.bincount((h >> np.uint64(64 - bits)).astype(np.int64), minlength=1 << bits)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.uint32 if len(h) < 2**32 else np.uint64)
        return cls(use_bitmap, bitmap, 64 - bits, starts, (h & np.uint64(0xFFFFFFFF)).astype(np.uint32))


_EMPTY_TABLE = SentenceTable(False, np.zeros(1, dtype=np.uint8), 63, np.zeros(3, dtype=np.uint32),
                             np.zeros(0, dtype=np.uint32))


class PCFGDocuments(CorpusGenerator):
    """Documents of S-V-O sentences whose word frequencies follow a per-document latent permutation.

    ``reference_losses()`` (nats/token, exact closed forms, EOS counted as a token):

    * ``latent_known``: entropy rate given the true permutations, the lower bound of any model's loss on
      the test split (3.90 at the defaults). Per sentence: H(form) + p_svo H(m) + E[slots per role]
      (H_S + H_V + H_O) + p_svo E[m] ln(n_connectors), divided by the mean sentence length (6 tokens);
      H_role is the entropy of Zipf(n_role, zipf_exponent). The tokens determine every choice, so this is
      the entropy of the tokens. It ignores the test-sentence rejection, which applies to training only.
    * ``role_unigram``: the same with each role uniform (ln n_role instead of H_role), the loss of a model
      that knows the grammar but ignores the document latent (4.87 at the defaults).
    """

    name = "pcfg"
    split_order = ("test", "train")

    def __init__(
        self,
        n_subjects: int = 300,
        n_verbs: int = 300,
        n_objects: int = 300,
        n_connectors: int = 100,
        zipf_exponent: float = 1.0,
        sections: int = 2,
        paragraphs: int = 4,
        sentences: int = 2,
        p_svo: float = 0.5,
        extra_clauses: list[float] = [1 / 3, 1 / 3, 1 / 3],
        repetitions: int = 10,
        n_documents: int = 1_000_000,
        n_test_documents: int = 100_000,
        dedupe_test_sentences: bool = True,
        shuffle_train: bool = True,
        documents_per_shard: int = 50_000,
        seed: int = 0,
    ) -> None:
        """
        Args:
            n_subjects: subject tokens (ids 0..n_subjects-1).
            n_verbs: verb tokens (the next ids).
            n_objects: object tokens (the next ids).
            n_connectors: connector tokens (the next ids), drawn uniformly before each extra clause.
            zipf_exponent: s of the per-role rank distribution P(r) proportional to r**-s.
            sections: sections per document (they only group sentences: no marker tokens).
            paragraphs: paragraphs per section.
            sentences: sentences per paragraph.
            p_svo: probability of the S V O form (else V S O).
            extra_clauses: probabilities of m = 0, 1, 2, ... extra "C S V O" clauses after an S V O sentence.
            repetitions: copies of each base document (same permutations, fresh sentences).
            n_documents: training base documents (the paper used 60.5M, about 58B tokens).
            n_test_documents: held-out base documents (test split, copies contiguous).
            dedupe_test_sentences: redraw every training sentence that occurs in the test split.
            shuffle_train: scatter the training documents (and so the copies) over the whole split.
            documents_per_shard: base documents per shard file (a shard holds this many times repetitions documents).
            seed: master seed.
        """
        super().__init__(seed)
        self.n_subjects = check_int("n_subjects", n_subjects)
        self.n_verbs = check_int("n_verbs", n_verbs)
        self.n_objects = check_int("n_objects", n_objects)
        self.n_connectors = check_int("n_connectors", n_connectors)
        self.zipf_exponent = check_positive("zipf_exponent", zipf_exponent)
        self.sections = check_int("sections", sections)
        self.paragraphs = check_int("paragraphs", paragraphs)
        self.sentences = check_int("sentences", sentences)
        self.p_svo = check_probability("p_svo", p_svo)
        self.extra_clauses = list(check_distribution("extra_clauses", extra_clauses))
        self.repetitions = check_int("repetitions", repetitions)
        self.n_documents = check_int("n_documents", n_documents)
        self.n_test_documents = check_int("n_test_documents", n_test_documents)
        self.dedupe_test_sentences = bool(dedupe_test_sentences)
        self.shuffle_train = bool(shuffle_train)
        self.documents_per_shard = check_int("documents_per_shard", documents_per_shard)
        n_vocab = self.n_subjects + self.n_verbs + self.n_objects + self.n_connectors + 3
        if n_vocab > 2**32:
            raise ConfigError(f"n_subjects, n_verbs, n_objects, n_connectors: vocabulary of {n_vocab} tokens "
                              "is too large for uint32 token ids")
        self._shares: dict[float, float] = {}  # memo of share_in_test_split (not an argument: not in hparams)

    # -- layout ---------------------------------------------------------------------------------------
    @property
    def sizes(self) -> np.ndarray:
        return np.array([self.n_subjects, self.n_verbs, self.n_objects], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """First id of subjects, verbs, objects, connectors, then EOS."""
        return np.cumsum([0, self.n_subjects, self.n_verbs, self.n_objects, self.n_connectors]).astype(np.int64)

    @property
    def eos_id(self) -> int:
        return int(self.offsets[-1])

    @property
    def sentences_per_document(self) -> int:
        return self.sections * self.paragraphs * self.sentences

    def vocabulary(self) -> Vocabulary:
        e = self.eos_id
        o = [int(x) for x in self.offsets]
        roles = {name: (o[i], o[i + 1]) for i, name in enumerate(("subjects", "verbs", "objects", "connectors"))}
        return tail_vocabulary([f"t{i}" for i in range(e)], **roles)

    def _n_docs(self, split: str) -> int:
        return self.n_documents if split == "train" else self.n_test_documents

    def shard_counts(self) -> dict[str, int]:
        return {s: -(-self._n_docs(s) // self.documents_per_shard) for s in ("train", "test")}

    def mean_extra_clauses(self) -> float:
        return float(np.dot(np.arange(len(self.extra_clauses)), self.extra_clauses))

    def mean_sentence_length(self, split: str = "test") -> float:
        """Expected tokens per sentence, EOS included: 6 at the defaults, about 6.34 in the deduped train split.

        The dedupe rejects only 3-token sentences in practice (a longer one is almost never in the test
        split), which lengthens the mean; ``share_in_test_split`` gives their rejection probabilities.
        """
        p, m = self.p_svo, np.asarray(self.extra_clauses)
        probs = np.concatenate([[1 - p], p * m])  # V S O, then S V O with m = 0, 1, ... extra clauses
        lengths = np.concatenate([[4], 4 + 4 * np.arange(len(m))])
        if split == "train" and self.dedupe_test_sentences:
            per_doc = self.repetitions * self.sentences_per_document
            accepted = probs * np.ones(len(probs))
            accepted[0] *= 1 - self.share_in_test_split(per_doc * (1 - p))
            accepted[1] *= 1 - self.share_in_test_split(per_doc * p * m[0])
            probs = accepted if accepted.sum() > 1e-12 else probs  # else the train split cannot be generated
        return float(probs @ lengths / probs.sum())

    def share_in_test_split(self, per_doc: float) -> float:
        """P(a 3-token sentence of one form is in the test split), its form used ``per_doc`` times per test document.

        For a fixed token triple, a test document gives it random ranks (r1, r2, r3), so its count there is
        about Poisson(per_doc * z(r1) z(r2) z(r3)). Exact mean over the rank triples up to 5e7 of them;
        beyond, the first-order bound per_doc / (n_subjects n_verbs n_objects), which overstates the share.
        """
        key = round(per_doc, 9)
        if key not in self._shares:
            z = [self.zipf_probs(int(n)) for n in self.sizes]
            n_triples = float(np.prod(self.sizes))
            if n_triples <= 5e7:
                pairs = np.multiply.outer(z[0], z[1]) * per_doc
                absent = sum(float(np.exp(-pairs * q).sum()) for q in z[2]) / n_triples
            else:
                absent = 1 - per_doc / n_triples
            self._shares[key] = 1 - absent ** self.n_test_documents
        return self._shares[key]

    def expected_tokens(self, split: str) -> int:
        """Expected tokens of a split (the train split's counts the sentences the dedupe lengthens)."""
        per_doc = self.sentences_per_document * self.mean_sentence_length(split)
        return int(round(self._n_docs(split) * self.repetitions * per_doc))

    def split_key(self, split: str, stream: int = 0) -> int:
        """Key of a split's streams (0: documents, 1: train order), the data pipeline's keyed hash chain."""
        return epoch_key(self.seed, SPLIT_IDS[split], stream)

    def document_ids(self, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(base document, copy) of every document of shard ``index``, in output order."""
        r = self.repetitions
        first = index * self.documents_per_shard * r
        stop = min(first + self.documents_per_shard * r, self._n_docs(split) * r)
        pos = np.arange(first, stop, dtype=np.int64)
        if split == "train" and self.shuffle_train:
            pos = feistel_permutation(pos, self.n_documents * r, self.split_key(split, 1))
        return pos // r, pos % r

    # -- tables ---------------------------------------------------------------------------------------
    def zipf_probs(self, n: int) -> np.ndarray:
        p = np.arange(1, n + 1, dtype=np.float64) ** -self.zipf_exponent
        return p / p.sum()

    def tables(self) -> dict[str, np.ndarray]:
        """Per-role Zipf CDFs ``cdf[3, max_n]`` (padded with 1.0), their guide tables, and the CDF of m."""
        width = int(self.sizes.max())
        cdf = np.ones((K.N_ROLES, width))
        guide = np.zeros((K.N_ROLES, width + 1), dtype=np.int64)
        for r, n in enumerate(self.sizes):
            cdf[r, :n] = np.cumsum(self.zipf_probs(int(n)))
            cdf[r, n - 1:] = 1.0  # guard against rounding: u < 1 always stops at the last rank
            guide[r] = np.minimum(np.searchsorted(cdf[r], np.arange(width + 1) / width, side="right"), n - 1)
        m_cdf = np.cumsum(self.extra_clauses)
        m_cdf[-1] = 1.0
        return {"cdf": cdf, "guide": guide, "m_cdf": m_cdf}

    def permutations(self, split: str, base: int) -> np.ndarray:
        """The base document's permutations ``[3, max_n]`` (row r: rank index -> id offset within role r)."""
        perm = np.empty((K.N_ROLES, int(self.sizes.max())), dtype=np.int64)
        K.shuffle_roles(perm, self.sizes, np.uint64(splitmix64(self.split_key(split) ^ int(base))))
        return perm

    # -- generation -----------------------------------------------------------------------------------
    def sentence_table(self, test_shards: list[np.ndarray]) -> SentenceTable:
        """The dedupe table of the given test-split shards."""
        return SentenceTable.build(self, test_shards)

    def prepare_context(self, corpus_dir: Path, split: str) -> SentenceTable | None:
        """For the train split with dedupe: the table of the finished test split read from ``corpus_dir``."""
        if split != "train" or not self.dedupe_test_sentences:
            return None
        dtype = self.vocabulary().dtype
        paths = [shard_path(Path(corpus_dir), "test", i) for i in range(self.shard_counts()["test"])]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CorpusError(f"train split needs the finished test split for dedupe; missing {missing[0]}")
        return self.sentence_table([np.fromfile(p, dtype=dtype) for p in paths])

    def generate_shard(self, split: str, index: int, context: SentenceTable | None = None) -> np.ndarray:
        """Shard ``index`` of ``split``; the train split with dedupe needs ``context`` (see ``prepare_context``)."""
        dedupe = split == "train" and self.dedupe_test_sentences
        if dedupe and context is None:
            raise CorpusError("train shards with dedupe_test_sentences need the test-sentence table: pass "
                              "context=prepare_context(corpus_dir, 'train') or sentence_table(test shards)")
        table = context if dedupe else _EMPTY_TABLE
        bases, copies = self.document_ids(split, index)
        t = self.tables()
        expected = len(bases) * self.sentences_per_document * self.mean_sentence_length(split)
        out = np.empty(int(expected * 1.02) + 1024, dtype=self.vocabulary().dtype)  # grown by doubling if short
        grammar = (self.sizes, self.offsets, t["cdf"], t["guide"], t["m_cdf"], self.p_svo, self.n_connectors)
        tokens, ok = K.generate_documents(bases, copies, np.uint64(self.split_key(split)), grammar,
                                          self.sentences_per_document, self.eos_id, dedupe, table,
                                          MAX_TRIES, out)
        if not ok:
            raise CorpusError(f"dedupe_test_sentences: no training sentence outside the test split in {MAX_TRIES} "
                              "draws; the vocabulary is too small for this test split (or disable the dedupe)")
        return tokens

    # -- reference losses -----------------------------------------------------------------------------
    def reference_losses(self) -> dict[str, float]:
        """``latent_known`` and ``role_unigram`` in nats/token (see the class docstring)."""
        p, m = self.p_svo, np.asarray(self.extra_clauses)
        h_form = -sum(q * math.log(q) for q in (p, 1 - p) if q > 0)
        h_m = -float(np.sum(m[m > 0] * np.log(m[m > 0])))
        slots = p * (1 + self.mean_extra_clauses()) + (1 - p)  # expected draws of each role per sentence
        shared = h_form + p * h_m + p * self.mean_extra_clauses() * math.log(self.n_connectors)
        h_zipf = sum(entropy(self.zipf_probs(int(n))) for n in self.sizes)
        h_uniform = sum(math.log(n) for n in self.sizes)
        length = self.mean_sentence_length()
        return {"latent_known": (shared + slots * h_zipf) / length, "role_unigram": (shared + slots * h_uniform) / length}
