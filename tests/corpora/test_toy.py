"""Toy hierarchy: reference equality, latent statistics, the flat ablation, and the exact Bayes loss."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hierlatent.corpora.reference.toy import brute_force_nll, reference_shard
from hierlatent.corpora.toy import ToyHierarchy, bayes_losses
from hierlatent.errors import ConfigError

SMALL = dict(n_sequences=300, n_test_sequences=100, sequences_per_shard=128)


def test_fast_equals_per_sequence_reference():
    for flat in (False, True):
        gen = ToyHierarchy(flat=flat, **SMALL)
        for split, i in (("train", 0), ("train", 2), ("test", 0)):
            assert np.array_equal(gen.generate_shard(split, i), reference_shard(gen, split, i))


def test_layout_and_determinism():
    gen = ToyHierarchy(**SMALL)
    seqs = gen.generate_shard("train", 0).reshape(-1, gen.seq_len)
    assert seqs.shape[0] == 128
    e = gen.evidence_per_segment
    assert (seqs[:, -1] == gen.vocabulary().special["eos"]).all()
    assert (seqs[:, e::e + 2][:, : gen.segments] == gen.cue_id).all()
    queries = seqs[:, e + 1::e + 2]
    assert ((queries >= gen.query_offset) & (queries < gen.cue_id)).all()
    assert (seqs[:, :e] < gen.n_evidence_tokens).all()
    assert np.array_equal(gen.generate_shard("train", 1), ToyHierarchy(**SMALL).generate_shard("train", 1))
    assert not np.array_equal(gen.generate_shard("train", 0), ToyHierarchy(seed=1, **SMALL).generate_shard("train", 0))
    assert gen.shard_counts() == {"train": 3, "test": 1}
    assert sum(len(gen.generate_shard("train", i)) for i in range(3)) == gen.expected_tokens("train")


def test_pi1_concentrates_on_each_top_states_block():
    t = ToyHierarchy().tables()
    block = (np.arange(16)[None, :] * 4 // 16) == np.arange(4)[:, None]
    mass = (t["pi1"] * block).sum(1)
    assert (mass > 0.8).all(), mass


def test_query_depends_on_z1_only_when_not_flat():
    q = ToyHierarchy().tables()["query"]
    assert np.abs(q[0, 0] - q[0, 1]).max() > 1e-3
    qf = ToyHierarchy(flat=True).tables()
    assert np.allclose(qf["query"][:, 0], qf["query"][:, 5])
    # the flat table is the Z0-marginal of the hierarchical one
    assert np.allclose(qf["query"][:, 0], np.einsum("ab,abq->aq", qf["pi1"], q))


def test_query_frequencies_match_table_chi_square():
    gen = ToyHierarchy(n_top=1, n_sub=1, n_sequences=4000, n_test_sequences=10, sequences_per_shard=4000)
    seqs = gen.generate_shard("train", 0).reshape(-1, gen.seq_len)
    e = gen.evidence_per_segment
    q = (seqs[:, e + 1::e + 2] - gen.query_offset).ravel()
    expected = gen.tables()["query"][0, 0] * q.size
    keep = expected > 5
    observed = np.bincount(q, minlength=gen.n_query_tokens)
    chi2 = (((observed - expected) ** 2) / expected)[keep].sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


def test_bayes_loss_equals_brute_force_enumeration():
    gen = ToyHierarchy(n_top=2, n_sub=4, n_evidence_tokens=6, n_query_tokens=5, segments=2,
                       evidence_per_segment=2, n_sequences=10, n_test_sequences=6, sequences_per_shard=10)
    seqs = gen.generate_shard("test", 0).reshape(-1, gen.seq_len)
    fast, _ = bayes_losses(gen, seqs)
    for s in range(len(seqs)):
        assert np.allclose(fast[s], brute_force_nll(gen, seqs[s]), atol=1e-9)


def test_reference_loss_orders():
    hier = ToyHierarchy(n_sequences=10, n_test_sequences=2000).reference_losses()
    flat = ToyHierarchy(n_sequences=10, n_test_sequences=2000, flat=True).reference_losses()
    # Z1 information makes hierarchical queries more predictable than flat ones
    assert hier["bayes_optimal_query"] < flat["bayes_optimal_query"]
    assert 0 < hier["bayes_optimal"] < np.log(64)


@pytest.mark.parametrize("field,value", [("n_top", 0), ("n_sub", 6), ("alpha", 1.5), ("concentration", -1.0),
                                         ("segments", -2), ("block_leak", -0.1)])
def test_bad_arguments_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        ToyHierarchy(**{field: value})
