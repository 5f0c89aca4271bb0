"""PCFG documents: reference equality, sentence and latent statistics, repetitions, dedupe through the store, losses."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from hierlatent.corpora import pcfg as pcfg_module
from hierlatent.corpora.pcfg import SPLIT_IDS, PCFGDocuments
from hierlatent.corpora.reference.pcfg import mix, permutation, reference_shard, sentence_set
from hierlatent.corpora.store import build_corpus
from hierlatent._splitmix import epoch_key, feistel_permutation
from hierlatent.errors import ConfigError, CorpusError

SMALL = dict(n_documents=60, n_test_documents=30, documents_per_shard=20, repetitions=3)


def _test_shards(gen: PCFGDocuments) -> list[np.ndarray]:
    return [gen.generate_shard("test", i) for i in range(gen.shard_counts()["test"])]


def _sentences(gen: PCFGDocuments, tokens: np.ndarray) -> list[tuple[int, ...]]:
    """The EOS-terminated sentences of ``tokens`` as tuples (EOS dropped)."""
    ends = np.flatnonzero(tokens == gen.eos_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tuple(tokens[a:b].tolist()) for a, b in zip(starts, ends)]


def _documents(gen: PCFGDocuments, tokens: np.ndarray) -> list[list[tuple[int, ...]]]:
    sents = _sentences(gen, tokens)
    k = gen.sentences_per_document
    assert len(sents) % k == 0
    return [sents[i:i + k] for i in range(0, len(sents), k)]


def _chi2_ok(observed, probs) -> None:
    observed = np.asarray(observed, dtype=float)
    assert stats.chisquare(observed, np.asarray(probs) * observed.sum()).pvalue > 1e-3


# -- the fast path against the per-sentence reference ------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {},
    dict(n_subjects=6, n_verbs=5, n_objects=7, n_connectors=3),  # tiny vocabulary: many rejected sentences
    dict(n_subjects=40, n_verbs=30, n_objects=20, n_connectors=7, zipf_exponent=1.7, p_svo=0.3,
         extra_clauses=[0.2, 0.3, 0.1, 0.4], sections=1, paragraphs=3, sentences=5, shuffle_train=False),
])
def test_fast_equals_reference(kw):
    gen = PCFGDocuments(**{**SMALL, **kw})
    tests = _test_shards(gen)
    for i, shard in enumerate(tests):
        assert np.array_equal(shard, reference_shard(gen, "test", i))
    table, test_sentences = gen.sentence_table(tests), sentence_set(gen, np.concatenate(tests))
    for i in range(gen.shard_counts()["train"]):
        assert np.array_equal(gen.generate_shard("train", i, table), reference_shard(gen, "train", i, test_sentences))
    perm = gen.permutations("train", 7)
    doc_key = mix(gen.split_key("train") ^ 7)
    for r, n in enumerate(gen.sizes):
        assert perm[r, :n].tolist() == permutation(doc_key, r, int(n))


@pytest.mark.parametrize("n_documents,repetitions", [(1000, 3), (37, 10), (1, 1), (4096, 4)])
def test_train_order_is_the_shared_feistel_permutation(n_documents, repetitions):
    gen = PCFGDocuments(n_documents=n_documents, repetitions=repetitions, documents_per_shard=100, seed=5)
    n = n_documents * repetitions
    expected = feistel_permutation(np.arange(n), n, epoch_key(5, SPLIT_IDS["train"], 1))
    bases, copies = zip(*(gen.document_ids("train", i) for i in range(gen.shard_counts()["train"])))
    assert np.array_equal(np.concatenate(bases) * repetitions + np.concatenate(copies), expected)
    assert gen.split_key("test") == epoch_key(5, SPLIT_IDS["test"], 0)


def test_hash_only_table_equals_bitmap_table(monkeypatch):
    gen = PCFGDocuments(n_subjects=8, n_verbs=8, n_objects=8, **SMALL)
    tests = _test_shards(gen)
    with_bitmap = gen.sentence_table(tests)
    monkeypatch.setattr(pcfg_module, "MAX_BITMAP_BITS", 0)
    hashed = gen.sentence_table(tests)
    assert with_bitmap.use_bitmap and not hashed.use_bitmap
    assert np.array_equal(gen.generate_shard("train", 1, with_bitmap), gen.generate_shard("train", 1, hashed))


# -- layout and determinism -------------------------------------------------------------------------------
def test_vocabulary_and_sentence_grammar():
    vocab = PCFGDocuments().vocabulary()
    assert vocab.size == 1003 and vocab.tokens[:2] == ("t0", "t1") and vocab.tokens[999] == "t999"
    assert vocab.tokens[1000:] == ("[EOS]", "[UNK]", "[PAD]")
    assert vocab.special == {"eos": 1000, "unk": 1001, "pad": 1002}
    gen = PCFGDocuments(n_subjects=5, n_verbs=6, n_objects=7, n_connectors=2, **SMALL)
    assert gen.vocabulary().special == {"eos": 20, "unk": 21, "pad": 22}
    s, v, o, c = (range(0, 5), range(5, 11), range(11, 18), range(18, 20))
    tokens = gen.generate_shard("test", 0)
    docs = _documents(gen, tokens)
    assert len(docs) == 20 * 3
    for sent in (x for d in docs for x in d):
        if sent[0] in v:
            assert len(sent) == 3 and sent[1] in s and sent[2] in o
        else:
            assert len(sent) in (3, 7, 11)
            for k, t in enumerate(sent):
                assert t in (c if k % 4 == 3 else (s, v, o)[k % 4])


def test_determinism_seed_and_sizes():
    gen = PCFGDocuments(**SMALL)
    a = gen.generate_shard("test", 1)
    assert np.array_equal(a, PCFGDocuments(**SMALL).generate_shard("test", 1))
    assert not np.array_equal(gen.generate_shard("test", 0), PCFGDocuments(seed=1, **SMALL).generate_shard("test", 0))
    assert gen.shard_counts() == {"train": 3, "test": 2}
    assert a.dtype == np.uint16
    n = sum(map(len, _test_shards(gen)))
    assert abs(n - gen.expected_tokens("test")) < 0.05 * n
    assert gen.expected_tokens("test") == 30 * 3 * 16 * 6
    assert PCFGDocuments(**SMALL).config_hash() != PCFGDocuments(shuffle_train=False, **SMALL).config_hash()


# -- sentence statistics ----------------------------------------------------------------------------------
def test_forms_clauses_and_connectors():
    gen = PCFGDocuments(p_svo=0.3, extra_clauses=[0.5, 0.2, 0.3], n_test_documents=400, repetitions=2,
                        documents_per_shard=400, n_documents=10)
    sents = _sentences(gen, gen.generate_shard("test", 0))
    svo = [x for x in sents if x[0] < 300]
    assert stats.binomtest(len(svo), len(sents), 0.3).pvalue > 1e-3
    m = Counter((len(x) - 3) // 4 for x in svo)
    _chi2_ok([m[0], m[1], m[2]], [0.5, 0.2, 0.3])
    conn = Counter(t for x in svo for t in x[3::4])
    _chi2_ok([conn[900 + i] for i in range(100)], np.full(100, 0.01))


def test_per_document_zipf_and_different_frequent_tokens():
    n = 50
    gen = PCFGDocuments(n_subjects=n, sections=4, paragraphs=8, sentences=8, repetitions=2, n_test_documents=40,
                        documents_per_shard=40, n_documents=10)
    docs = _documents(gen, gen.generate_shard("test", 0))
    ranks, tops, top_share = [], [], []
    for d, doc in enumerate(docs):
        inverse = np.argsort(gen.permutations("test", d // 2)[0, :n])  # subject id -> rank index
        subjects = [t for x in doc for t in x if t < n]
        ranks += [inverse[t] for t in subjects]
        counts = np.bincount(subjects, minlength=n)
        tops.append(counts.argmax())
        top_share.append(counts.max() / len(subjects))
    zipf = gen.zipf_probs(n)
    observed = np.bincount(ranks, minlength=n)
    chi2 = ((observed - zipf * len(ranks)) ** 2 / (zipf * len(ranks))).sum()
    assert stats.chi2.sf(chi2, n - 1) > 1e-3  # rank frequencies within documents follow Zipf(50, 1)
    assert 0.8 * zipf[0] < np.mean(top_share) < 1.3 * zipf[0]  # without the permutation: the top token's share
    assert len(set(tops)) > 20  # every document has its own frequent subject


def test_permutations_are_uniform():
    gen = PCFGDocuments(n_subjects=4, n_verbs=5, **SMALL)
    seen = Counter(tuple(gen.permutations("train", b)[0, :4]) for b in range(4800))
    assert len(seen) == 24
    _chi2_ok([seen[p] for p in sorted(seen)], np.full(24, 1 / 24))
    first_verb = Counter(gen.permutations("train", b)[1, 0] for b in range(2000))
    _chi2_ok([first_verb[i] for i in range(5)], np.full(5, 0.2))


# -- repetitions and order --------------------------------------------------------------------------------
PEAKED = dict(zipf_exponent=6.0, n_subjects=50, dedupe_test_sentences=False)  # rank 1 has 98% of the mass


def _top_subject(doc) -> int:
    return Counter(t for x in doc for t in x if t < 50).most_common(1)[0][0]


def test_test_copies_contiguous_and_share_permutations():
    gen = PCFGDocuments(**PEAKED, **SMALL)
    docs = _documents(gen, gen.generate_shard("test", 1))
    bases, copies = gen.document_ids("test", 1)
    assert bases.tolist() == [20 + i // 3 for i in range(30)] and copies.tolist() == [i % 3 for i in range(30)]
    tops = [_top_subject(d) for d in docs]
    assert tops == [gen.permutations("test", b)[0, 0] for b in bases]
    assert all(docs[i] != docs[i + 1] for i in range(len(docs) - 1))  # fresh sentences per copy
    assert len(set(tops)) > 5


def test_train_copies_scattered_across_shards():
    gen = PCFGDocuments(**PEAKED, **{**SMALL, "n_documents": 100})
    ids = [gen.document_ids("train", i) for i in range(5)]
    pairs = [(int(b), int(c)) for bs, cs in ids for b, c in zip(bs, cs)]
    assert sorted(pairs) == [(b, c) for b in range(100) for c in range(3)]
    shards_of = {b: {i for i, (bs, _) in enumerate(ids) if b in bs} for b in range(100)}
    assert np.mean([len(s) > 1 for s in shards_of.values()]) > 0.8
    docs = _documents(gen, gen.generate_shard("train", 2))
    assert [_top_subject(d) for d in docs] == [gen.permutations("train", b)[0, 0] for b in ids[2][0]]
    ordered = PCFGDocuments(shuffle_train=False, **PEAKED, **{**SMALL, "n_documents": 100})
    assert ordered.document_ids("train", 2)[0].tolist() == [40 + i // 3 for i in range(60)]


# -- test/train disjointness and workers through the real store -------------------------------------------
DEDUPE = dict(n_subjects=10, n_verbs=10, n_objects=10, n_connectors=5, n_documents=120, n_test_documents=40,
              documents_per_shard=40, repetitions=2)


def test_train_sentences_never_in_test_split(tmp_cache):
    gen = PCFGDocuments(**DEDUPE)
    corpus = build_corpus(gen, workers=1, progress=False)
    test = np.concatenate(corpus.memmaps("test"))
    train = np.concatenate(corpus.memmaps("train"))
    test_set = set(_sentences(gen, test))
    assert test_set == sentence_set(gen, test)
    assert not test_set & set(_sentences(gen, train))
    undeduped = PCFGDocuments(dedupe_test_sentences=False, **DEDUPE).generate_shard("train", 0)
    assert test_set & set(_sentences(gen, undeduped))  # the check has teeth: without dedupe they overlap
    assert np.array_equal(corpus.memmaps("train")[1], reference_shard(gen, "train", 1, test_set))
    assert corpus.reference_losses == gen.reference_losses()
    assert abs(corpus.n_tokens("train") / gen.expected_tokens("train") - 1) < 0.03  # dedupe-lengthened estimate


def test_expected_train_tokens_count_the_dedupe():
    assert PCFGDocuments().mean_sentence_length("train") == pytest.approx(6.335, abs=0.005)  # measured: 6.334
    assert PCFGDocuments(dedupe_test_sentences=False).mean_sentence_length("train") == pytest.approx(6.0)
    gen = PCFGDocuments(n_subjects=30, n_verbs=30, n_objects=30, n_documents=400, n_test_documents=300,
                        documents_per_shard=400, repetitions=3)
    n = len(gen.generate_shard("train", 0, gen.sentence_table(_test_shards(gen))))
    assert abs(n / gen.expected_tokens("train") - 1) < 0.01 and gen.expected_tokens("train") > gen.expected_tokens("test")


def test_workers_write_identical_bytes(tmp_path, monkeypatch):
    gen = PCFGDocuments(**DEDUPE)
    shards = {}
    for workers in (1, 2):
        monkeypatch.setenv("HIERLATENT_CACHE", str(tmp_path / f"w{workers}"))
        corpus = build_corpus(gen, workers=workers, progress=False)
        shards[workers] = [p.read_bytes() for s in ("test", "train") for p in corpus.shard_paths(s)]
    assert len(shards[1]) == 4 and shards[1] == shards[2]


def test_train_needs_the_test_table_and_impossible_dedupe_fails():
    gen = PCFGDocuments(**SMALL)
    with pytest.raises(CorpusError, match="test-sentence table"):
        gen.generate_shard("train", 0)
    tiny = PCFGDocuments(n_subjects=2, n_verbs=2, n_objects=2, p_svo=1.0, extra_clauses=[1.0], **SMALL)
    with pytest.raises(CorpusError, match="dedupe_test_sentences"):
        tiny.generate_shard("train", 0, tiny.sentence_table(_test_shards(tiny)))


# -- reference losses -------------------------------------------------------------------------------------
def test_reference_losses_closed_form():
    ref = PCFGDocuments().reference_losses()
    assert ref["latent_known"] == pytest.approx(3.90, abs=0.005)
    assert ref["role_unigram"] == pytest.approx(4.87, abs=0.005)
    vso = PCFGDocuments(n_subjects=4, n_verbs=4, n_objects=4, p_svo=0.0, zipf_exponent=1e-9).reference_losses()
    assert vso["latent_known"] == pytest.approx(3 * math.log(4) / 4) == vso["role_unigram"]


def test_reference_losses_match_monte_carlo():
    gen = PCFGDocuments(p_svo=0.6, extra_clauses=[0.3, 0.5, 0.2], n_connectors=40, n_test_documents=300,
                        repetitions=2, documents_per_shard=300, n_documents=10)
    zipf = np.log(gen.zipf_probs(300))
    m_logp = np.log(gen.extra_clauses)
    nll = {"latent_known": [], "role_unigram": []}
    lengths = []
    for d, doc in enumerate(_documents(gen, gen.generate_shard("test", 0))):
        perm = gen.permutations("test", d // 2)
        rank = [np.argsort(perm[r]) for r in range(3)]  # id within role -> rank index
        for x in doc:
            svo = x[0] < 300
            roles = [0, 1, 2] * ((len(x) + 1) // 4) if svo else [1, 0, 2]
            words = [t for k, t in enumerate(x) if not (svo and k % 4 == 3)]
            form = math.log(0.6) + m_logp[(len(x) - 3) // 4] - (len(x) // 4) * math.log(40) if svo else math.log(0.4)
            nll["latent_known"].append(-form - sum(zipf[rank[r][t - 300 * r]] for r, t in zip(roles, words)))
            nll["role_unigram"].append(-form + len(words) * math.log(300))
            lengths.append(len(x) + 1)
    lengths = np.array(lengths, dtype=float)
    for key, expected in gen.reference_losses().items():
        per_sentence = np.array(nll[key])
        estimate = per_sentence.sum() / lengths.sum()
        stderr = np.std(per_sentence - estimate * lengths) / np.sqrt(len(lengths)) / lengths.mean()
        assert abs(estimate - expected) < 4 * stderr + 1e-9, (key, estimate, expected, stderr)


# -- bad arguments ----------------------------------------------------------------------------------------
BAD = [("n_subjects", 0), ("n_verbs", -1), ("n_objects", 0), ("n_connectors", 0), ("zipf_exponent", 0.0),
       ("zipf_exponent", -1.0), ("sections", 0), ("paragraphs", 0), ("sentences", 0), ("p_svo", 1.5),
       ("p_svo", -0.1), ("extra_clauses", [0.5, 0.6]), ("extra_clauses", [-0.1, 1.1]), ("extra_clauses", []),
       ("extra_clauses", 0.5), ("repetitions", 0), ("n_documents", 0), ("n_test_documents", 0),
       ("documents_per_shard", 0), ("seed", -1), ("n_subjects", 2**32), ("n_verbs", 1.5)]


@pytest.mark.parametrize("field,value", BAD)
def test_bad_arguments_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        PCFGDocuments(**{field: value})
