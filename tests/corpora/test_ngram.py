"""Variable-order n-gram corpus: reference equality, sentence layout, the sampling laws (chi-square), the exact
Bayes loss against brute force, worker-count independence through the store, and bad arguments."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from scipy import stats

from hierlatent.corpora import store
from hierlatent.corpora._ngram_kernels import build_guide
from hierlatent.corpora.ngram import GUIDE_SIZE, NGramCorpus
from hierlatent.corpora.reference.ngram import brute_force_nll, brute_force_predictive, context, reference_shard
from hierlatent.errors import ConfigError

SMALL = dict(n_sentences=600, n_test_sentences=200, sentences_per_shard=250)
TINY = dict(n_words=12, n_contexts=5, min_length=2, extra_length=4, orders=[1, 3], n_sentences=10,
            n_test_sentences=6, sentences_per_shard=6)


def _sentences(tokens: np.ndarray, eos: int) -> list[np.ndarray]:
    return np.split(tokens, np.flatnonzero(tokens == eos) + 1)[:-1]


def _chi2_pvalue(observed: np.ndarray, expected: np.ndarray) -> float:
    """Chi-square p-value, pooling the categories expected fewer than 5 times into one."""
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    return stats.chisquare(obs[keep], exp[keep] * obs.sum() / exp[keep].sum()).pvalue


@pytest.mark.parametrize("kwargs", [{}, dict(n_words=40, n_contexts=7, orders=[3, 1, 64], order_decay=0.5,
                                             min_length=1, extra_length=3, seed=5)])
def test_fast_equals_per_sentence_reference(kwargs):
    gen = NGramCorpus(**{**SMALL, **kwargs})
    for split, i in (("train", 0), ("train", 2), ("test", 0)):
        assert np.array_equal(gen.generate_shard(split, i), reference_shard(gen, split, i))


def test_content_does_not_depend_on_shard_size():
    a = NGramCorpus(**SMALL)
    b = NGramCorpus(**{**SMALL, "sentences_per_shard": 600})
    whole = np.concatenate([a.generate_shard("train", i) for i in range(a.shard_counts()["train"])])
    assert b.shard_counts()["train"] == 1 and np.array_equal(whole, b.generate_shard("train", 0))


def test_layout_determinism_and_seed():
    gen = NGramCorpus(**SMALL)
    assert gen.shard_counts() == {"train": 3, "test": 1}
    vocab = gen.vocabulary()
    assert vocab.size == 1002 and vocab.special == {"eos": 999, "unk": 1000, "pad": 1001}
    assert vocab.tokens[:2] == ("t0", "t1") and vocab.tokens[998:] == ("t998", "[EOS]", "[UNK]", "[PAD]")
    shard = gen.generate_shard("train", 0)
    assert shard.dtype == np.uint16 and shard[-1] == 999
    sents = _sentences(shard, 999)
    assert len(sents) == 250 and sum(map(len, sents)) == len(shard)
    for s in sents:  # EOS only at the end, words only before it, length in range
        assert s[-1] == 999 and (s[:-1] < 999).all() and 10 <= len(s) - 1 <= 109
    assert np.array_equal(shard, NGramCorpus(**SMALL).generate_shard("train", 0))
    assert not np.array_equal(shard[:500], NGramCorpus(**SMALL, seed=1).generate_shard("train", 0)[:500])
    assert not np.array_equal(shard[:500], gen.generate_shard("test", 0)[:500])  # splits use their own streams
    total = sum(len(gen.generate_shard("train", i)) for i in range(3))
    assert abs(total / gen.expected_tokens("train") - 1) < 0.05


def test_sentence_lengths_uniform_chi_square():
    gen = NGramCorpus(n_words=30, min_length=3, extra_length=12, n_sentences=6000, sentences_per_shard=6000)
    lengths = np.array([len(s) - 1 for s in _sentences(gen.generate_shard("train", 0), gen.eos_id)])
    assert lengths.min() == 3 and lengths.max() == 14
    assert _chi2_pvalue(np.bincount(lengths - 3, minlength=12), np.full(12, 500.0)) > 1e-3


def _zipf_without_eos(exponent: float, n_words: int) -> np.ndarray:
    """Zipf over ranks 1..n_words+1 (the last is EOS), EOS rejected: renormalised over the first n_words."""
    w = np.arange(1, n_words + 2, dtype=np.float64) ** -exponent
    return w[:n_words] / w[:n_words].sum()


def test_first_tokens_follow_the_empty_history_context():
    gen = NGramCorpus(n_words=25, n_contexts=1000, n_sentences=8000, sentences_per_shard=8000, seed=3)
    first = np.array([s[0] for s in _sentences(gen.generate_shard("train", 0), gen.eos_id)])
    c = context([], gen.n_contexts)
    assert c == 0  # the empty window hashes to 0
    expected = _zipf_without_eos(gen.tables()["exponents"][c], gen.n_words) * len(first)
    assert _chi2_pvalue(np.bincount(first, minlength=gen.n_words), expected) > 1e-3


def test_single_context_tokens_are_iid_zipf():
    gen = NGramCorpus(n_words=30, n_contexts=1, exponent_mean=1.3, exponent_std=0.0, exponent_floor=0.5,
                      n_sentences=400, sentences_per_shard=400)
    tokens = gen.generate_shard("train", 0)
    words = tokens[tokens != gen.eos_id]
    assert gen.tables()["exponents"][0] == 1.3
    expected = _zipf_without_eos(1.3, 30) * len(words)
    assert _chi2_pvalue(np.bincount(words, minlength=30), expected) > 1e-3


def test_orders_follow_their_law():
    """With one-hot context laws (context c always emits word c), each token reveals the context it was drawn from."""
    orders = [1, 2, 4, 8]
    gen = NGramCorpus(n_words=64, n_contexts=64, orders=orders, order_decay=1.5, min_length=20, extra_length=10,
                      n_sentences=1500, sentences_per_shard=1500)
    t = dict(gen.tables())
    t["cdf"] = (np.arange(64)[None, :] >= np.arange(64)[:, None]).astype(np.float64)  # one-hot at word c
    t["guide"] = build_guide(t["cdf"], GUIDE_SIZE)
    counts = np.zeros(len(orders))
    for s in _sentences(gen.generate_shard("train", 0, t), gen.eos_id):
        s = [int(x) for x in s[:-1]]
        for p in range(1, len(s)):
            ctx = [context(s[max(0, p - n):p], 64) for n in orders]
            assert s[p] in ctx  # a window of one of the orders (collapsed to the whole prefix when short)
            if p >= max(orders) and len(set(ctx)) == len(orders):
                counts[ctx.index(s[p])] += 1
    probs = 1 / np.arange(1, 5) ** 1.5
    assert counts.sum() > 10_000
    assert _chi2_pvalue(counts, probs / probs.sum() * counts.sum()) > 1e-3


def test_exponents_floor_and_normal():
    gen = NGramCorpus(n_words=2, n_contexts=20_000, exponent_mean=2.0, exponent_std=1.2, exponent_floor=1.2, seed=7)
    e = gen.tables()["exponents"]
    assert e.min() == 1.2
    floored = np.mean(e == 1.2)
    assert abs(floored - stats.norm.cdf(1.2, 2.0, 1.2)) < 0.02
    above = e[e > 1.2]
    truncated = stats.truncnorm((1.2 - 2.0) / 1.2, np.inf, loc=2.0, scale=1.2)
    assert stats.kstest(above, truncated.cdf).pvalue > 1e-3
    assert np.array_equal(e, NGramCorpus(n_words=5, n_contexts=20_000, seed=7).tables()["exponents"])


def test_bayes_loss_equals_brute_force():
    gen = NGramCorpus(**TINY)
    tokens = gen.generate_shard("test", 0)
    sents = _sentences(tokens, gen.eos_id)
    brute = np.concatenate([brute_force_nll(gen, list(s)) for s in sents])
    assert np.allclose(gen.token_nll(tokens), brute, rtol=0, atol=1e-12)
    laws = [np.array(brute_force_predictive(gen, [int(x) for x in s[:i]])) for s in sents for i in range(len(s))]
    assert all(abs(law.sum() - 1) < 1e-12 for law in laws)
    entropy = np.array([-(law[law > 0] * np.log(law[law > 0])).sum() for law in laws])
    assert np.allclose(gen.predictive_entropy(tokens), entropy, rtol=0, atol=1e-10)


def test_reference_losses():
    ref = NGramCorpus(n_sentences=10, n_test_sentences=3000, sentences_per_shard=1000).reference_losses()
    assert set(ref) == {"bayes_optimal", "bayes_optimal_stderr", "bayes_optimal_entropy", "bayes_optimal_words",
                        "bayes_optimal_eos"}
    assert 0 < ref["bayes_optimal_stderr"] < 0.05
    # the mean loss estimates the mean entropy at the same positions
    assert abs(ref["bayes_optimal"] - ref["bayes_optimal_entropy"]) < 4 * ref["bayes_optimal_stderr"]
    assert 0 < ref["bayes_optimal"] < np.log(1000)


def test_workers_give_identical_bytes(tmp_cache):
    gen = NGramCorpus(n_sentences=900, n_test_sentences=200, sentences_per_shard=300)
    one = store.build_corpus(gen, workers=1, progress=False)
    bytes_one = {p.name: p.read_bytes() for p in one.shard_paths("train") + one.shard_paths("test")}
    assert one.vocab_size == 1002 and one.special["eos"] == 999 and "bayes_optimal" in one.reference_losses
    shutil.rmtree(one.path)
    two = store.build_corpus(NGramCorpus(n_sentences=900, n_test_sentences=200, sentences_per_shard=300),
                             workers=2, progress=False)
    assert {p.name: p.read_bytes() for p in two.shard_paths("train") + two.shard_paths("test")} == bytes_one
    assert len(pickle.dumps(gen)) < 10_000  # the tables stay behind when the recipe is shipped to a worker


@pytest.mark.parametrize("field,value", [
    ("n_words", 0), ("n_contexts", 0), ("exponent_mean", 0.0), ("exponent_mean", -1.0), ("exponent_std", -0.5),
    ("exponent_floor", 0.0), ("min_length", 0), ("extra_length", 0), ("orders", []), ("orders", [1, 0]),
    ("orders", [2, 2]), ("orders", "1,2"), ("order_decay", -1.0), ("n_sentences", 0), ("n_test_sentences", -3),
    ("sentences_per_shard", 0), ("seed", -1), ("exponent_std", float("nan")),
])
def test_bad_arguments_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        NGramCorpus(**{field: value})
