"""Vocabulary roles per generator, ``Probe.bind`` through the ``ProbeRunner``, and refusals naming the probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.corpora.base import Vocabulary
from hierlatent.corpora.grammar import GrammarCorpus
from hierlatent.corpora.ngram import NGramCorpus
from hierlatent.corpora.pcfg import PCFGDocuments
from hierlatent.corpora.toy import ToyHierarchy
from hierlatent.errors import ConfigError, ProbeError
from hierlatent.probes.hydra import HydraProbe
from hierlatent.probes.icl import ICLProbe
from hierlatent.probes.induction import InductionProbe
from hierlatent.probes.query_fv import QueryFunctionVectorProbe


def _ids(vocab: Vocabulary, role: str) -> list[str]:
    lo, hi = vocab.roles[role]
    return list(vocab.tokens[lo:hi])


def test_toy_roles_match_its_layout():
    vocab = ToyHierarchy(n_evidence_tokens=5, n_query_tokens=3).vocabulary()
    assert _ids(vocab, "evidence") == ["e0", "e1", "e2", "e3", "e4"]
    assert _ids(vocab, "query") == ["q0", "q1", "q2"]
    assert _ids(vocab, "cue") == ["[QUERY]"]
    assert _ids(vocab, "content") == _ids(vocab, "evidence") + _ids(vocab, "query")
    assert _ids(vocab, "special") == ["[EOS]", "[UNK]", "[PAD]"]


def test_pcfg_roles_follow_the_configured_sizes():
    gen = PCFGDocuments(n_subjects=3, n_verbs=4, n_objects=5, n_connectors=2)
    roles = gen.vocabulary().roles
    assert roles == {"subjects": (0, 3), "verbs": (3, 7), "objects": (7, 12), "connectors": (12, 14),
                     "content": (0, 14), "special": (14, 17)}
    assert gen.vocabulary().special["eos"] == roles["special"][0]


def test_ngram_and_grammar_have_content_and_special_only():
    grammar = Path(__file__).resolve().parents[2] / "configs" / "grammars" / "english_small.cfg"
    for gen in (NGramCorpus(n_words=50), GrammarCorpus(grammar_file=grammar)):
        vocab = gen.vocabulary()
        assert set(vocab.roles) == {"content", "special"}
        assert _ids(vocab, "special") == ["[EOS]", "[UNK]", "[PAD]"]
        assert vocab.roles["content"] == (0, vocab.size - 3)


def test_bad_roles_are_refused():
    with pytest.raises(ConfigError, match="unknown role 'nouns'"):
        Vocabulary(("a", "b"), roles={"nouns": (0, 1)})
    with pytest.raises(ConfigError, match=r"roles\['content'\]"):
        Vocabulary(("a", "b"), roles={"content": (0, 3)})


def test_bind_gives_induction_its_role_range():
    probe = InductionProbe(n=4, ks=[1], role="query")
    ProbeRunner([probe]).bind(ToyHierarchy(n_evidence_tokens=5, n_query_tokens=3).vocabulary())
    assert probe.token_range(12) == (5, 8)
    x = probe.stimulus(12)
    assert int(x.min()) >= 5 and int(x.max()) < 8


def test_unbound_role_is_a_probe_error():
    with pytest.raises(ProbeError, match="InductionProbe.role.*not bound"):
        InductionProbe(role="content").token_range(100)


def test_explicit_range_is_checked_against_content():
    vocab = ToyHierarchy().vocabulary()  # 100 ids, content 0-95
    runner = ProbeRunner([InductionProbe(n=4, ks=[1], token_low=0, token_high=98)])
    with pytest.raises(ProbeError, match=r"probes\[0\] \(InductionProbe.*token_low/token_high.*'content'"):
        runner.bind(vocab)
    ProbeRunner([InductionProbe(n=4, ks=[1], token_low=0, token_high=96)]).bind(vocab)  # fits: no error


@pytest.mark.parametrize("probe", [HydraProbe(stimulus="query"), QueryFunctionVectorProbe(),
                                   InductionProbe(role="evidence")])
def test_probe_needing_missing_roles_is_refused_naming_it(probe):
    runner = ProbeRunner([ICLProbe(), probe])
    with pytest.raises(ProbeError, match=rf"probes\[1\] \({type(probe).__name__}, '{probe.name}'\): needs the corpus roles"):
        runner.bind(NGramCorpus(n_words=50).vocabulary())


def test_runner_binds_from_the_datamodule_generator():
    class DM:
        generator = ToyHierarchy(n_evidence_tokens=5, n_query_tokens=3)

    probe = HydraProbe(stimulus="query")
    ProbeRunner([probe]).bind_datamodule(DM())
    assert probe._roles == ((8, 9), (5, 8))
    ProbeRunner([HydraProbe()]).bind_datamodule(None)  # no corpus, no roles needed: fine
    with pytest.raises(ProbeError, match="needs the corpus roles"):
        ProbeRunner([HydraProbe(stimulus="query")]).bind_datamodule(None)
