"""Grammar-file corpora: exact reference equality, rule frequencies (chi-square), the document latent, bad grammars."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from hierlatent.corpora.grammar import GrammarCorpus
from hierlatent.corpora.reference.grammar import reference_shard
from hierlatent.errors import ConfigError, GrammarError

GRAMMARS = Path(__file__).parents[2] / "configs" / "grammars"


@pytest.mark.parametrize("name,latent", [("english_small.cfg", ["N", "V"]), ("nested_dependencies.cfg", [])])
def test_fast_equals_recursive_reference(name, latent):
    gen = GrammarCorpus(GRAMMARS / name, n_documents=120, n_test_documents=30, documents_per_shard=50,
                        repetitions=2, latent_categories=latent, max_sentence_length=25)
    for split, i in (("train", 0), ("train", 2), ("test", 0)):
        assert np.array_equal(gen.generate_shard(split, i), reference_shard(gen, split, i))


def _write(tmp_path, text, name="g.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rule_frequencies_chi_square(tmp_path):
    path = _write(tmp_path, "S -> A B [0.6] | B [0.4]\nA -> 'x' [0.5] | 'y' [0.3] | 'z' [0.2]\nB -> 'u' [0.9] | 'v' [0.1]\n")
    gen = GrammarCorpus(path, n_documents=500, sentences_per_document=20, documents_per_shard=500)
    toks = gen.vocabulary().tokens
    sents = " ".join(toks[t] for t in gen.generate_shard("train", 0)).split(" [EOS]")[:-1]
    counts = Counter(s.strip().split()[0] in ("x", "y", "z") for s in sents)
    _chi2_ok([counts[True], counts[False]], [0.6, 0.4])
    a = Counter(t for s in sents for t in s.split() if t in "xyz")
    _chi2_ok([a["x"], a["y"], a["z"]], [0.5, 0.3, 0.2])
    b = Counter(t for s in sents for t in s.split() if t in "uv")
    _chi2_ok([b["u"], b["v"]], [0.9, 0.1])
    assert abs(np.mean([len(s.split()) for s in sents]) - gen.expected_sentence_length()) < 0.05


def _chi2_ok(observed, probs):
    observed = np.array(observed)
    assert stats.chisquare(observed, np.array(probs) * observed.sum()).pvalue > 1e-3


def test_document_latent_permutes_terminals_per_document(tmp_path):
    path = _write(tmp_path, "S -> N [1.0]\nN -> 'a' [0.7] | 'b' [0.1] | 'c' [0.1] | 'd' [0.1]\n")
    gen = GrammarCorpus(path, n_documents=200, sentences_per_document=40, documents_per_shard=200, latent_categories=["N"])
    docs = gen.generate_shard("train", 0).reshape(200, 40, 2)[:, :, 0]
    top = [np.bincount(d, minlength=4).argmax() for d in docs]
    assert len(set(top)) == 4  # each terminal is the document's frequent one somewhere
    share = np.mean([np.mean(d == t) for d, t in zip(docs, top)])
    assert 0.6 < share < 0.8  # the top-ranked rule keeps its 0.7, whatever terminal it emits
    flat = GrammarCorpus(path, n_documents=200, sentences_per_document=40, documents_per_shard=200)
    assert {np.bincount(d, minlength=4).argmax() for d in flat.generate_shard("train", 0).reshape(200, 40, 2)[:, :, 0]} == {0}


def test_repetitions_share_permutations(tmp_path):
    path = _write(tmp_path, "S -> N [1.0]\nN -> 'a' [0.97] | 'b' [0.01] | 'c' [0.01] | 'd' [0.01]\n")
    gen = GrammarCorpus(path, n_documents=50, sentences_per_document=30, repetitions=3, documents_per_shard=50, latent_categories=["N"])
    docs = gen.generate_shard("train", 0).reshape(50, 3, 30, 2)[..., 0]
    tops = np.array([[np.bincount(c, minlength=4).argmax() for c in d] for d in docs])
    assert (tops == tops[:, :1]).all()


def test_cache_key_follows_file_content(tmp_path):
    path = _write(tmp_path, "S -> 'a' [1.0]\n")
    h1 = GrammarCorpus(path).config_hash()
    path.write_text("S -> 'b' [1.0]\n")
    assert GrammarCorpus(path).config_hash() != h1


def test_reference_losses_single_rule_chain(tmp_path):
    path = _write(tmp_path, "S -> A A [1.0]\nA -> 'x' [0.5] | 'y' [0.5]\n")
    ref = GrammarCorpus(path).reference_losses()
    assert ref["derivational_entropy"] == pytest.approx(2 * np.log(2) / 3)


BAD = [
    ("S -> NP VP [1.0]\nNP -> 'a' [0.5] | 'b [0.5]\n", r"g.cfg: Unable to parse line 2"),
    ("S -> A [1.0]\nA -> 'a' [0.5] | 'b' [0.2]\n", r"g.cfg:2: probabilities of the rules for A sum to 0.7"),
    ("S -> A B [1.0]\nA -> 'a' [1.0]\n", r"g.cfg:1: nonterminal B is used but never defined"),
    ("S -> 'a' [1.0]\nZ -> 'b' [1.0]\n", r"g.cfg:2: nonterminal Z is unreachable"),
    ("S -> S S [0.6] | 'a' [0.4]\n", r"g.cfg:1: expected sentence length is infinite"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_grammars_name_the_line(tmp_path, text, message):
    with pytest.raises(GrammarError, match=message):
        GrammarCorpus(_write(tmp_path, text))


def test_missing_file_and_bad_latent(tmp_path):
    with pytest.raises(GrammarError, match="grammar_file: cannot read"):
        GrammarCorpus(tmp_path / "nope.cfg")
    path = _write(tmp_path, "S -> A [1.0]\nA -> 'a' B [1.0]\nB -> 'b' [1.0]\n")
    with pytest.raises(GrammarError, match="latent category A must be lexical"):
        GrammarCorpus(path, latent_categories=["A"])
    with pytest.raises(GrammarError, match="latent_categories: Q is not a nonterminal"):
        GrammarCorpus(path, latent_categories=["Q"])
    with pytest.raises(ConfigError, match="n_documents"):
        GrammarCorpus(path, n_documents=0)
