"""Vocabulary roles per generator, ``Probe.bind`` through the ``ProbeRunner``/``ProbeSuite``, and refusals naming the probe."""

from __future__ import annotations

from pathlib import Path

import pytest

import torch

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.callbacks.suite import ProbeSuite
from hierlatent.corpora.base import Vocabulary
from hierlatent.corpora.grammar import GrammarCorpus
from hierlatent.corpora.ngram import NGramCorpus
from hierlatent.corpora.pcfg import PCFGDocuments
from hierlatent.corpora.toy import ToyHierarchy
from hierlatent.errors import ConfigError, ProbeError
from hierlatent.probes.function_vectors import FunctionVectorProbe, icl_prompts
from hierlatent.probes.hydra import HydraProbe
from hierlatent.probes.icl import ICLProbe
from hierlatent.probes.induction import InductionProbe
from hierlatent.probes.query_fv import QueryFunctionVectorProbe
from hierlatent.probes.syntax import SyntaxProbe


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


# -- FunctionVectorProbe and SyntaxProbe read the PCFG roles -------------------------------------------------
def _quickstart_vocab() -> Vocabulary:
    """The quickstart's PCFG lexicon: S 0-31, V 32-63, O 64-95, C 96-99, then the special tail."""
    return PCFGDocuments(n_subjects=32, n_verbs=32, n_objects=32, n_connectors=4).vocabulary()


def _inside(ids, vocab: Vocabulary, role: str) -> bool:
    lo, hi = vocab.roles[role]
    return bool(((ids >= lo) & (ids < hi)).all())


def test_function_vectors_read_the_bound_roles():
    vocab = _quickstart_vocab()
    probe = FunctionVectorProbe(n_pairs=64, seed=42, n_icl_prompts=8, n_shots=3)
    ProbeSuite([probe]).bind(vocab)
    pairs = probe.pairs()
    for col, role in enumerate(["subjects", "verbs", "objects"] * 2):
        assert _inside(pairs[:, col], vocab, role), role
    assert probe.connector == vocab.roles["connectors"][0]  # C = the first connector
    prompts = icl_prompts(8, 3, probe.subject_range, probe.verb_range, probe.object_range, probe.connector, 42)
    assert _inside(prompts["gold"], vocab, "objects") and _inside(prompts["zero_shot"][:, 0], vocab, "subjects")


def test_roles_give_the_stimuli_the_typed_ranges_gave():
    """Where the roles equal the ranges configs used to type, the stimuli (hence the numbers) are unchanged."""
    vocab = _quickstart_vocab()
    fv, syntax = FunctionVectorProbe(n_pairs=16, seed=42, todd=False), SyntaxProbe(n_samples=32)
    ProbeSuite([fv, syntax]).bind(vocab)
    typed_fv = FunctionVectorProbe(n_pairs=16, seed=42, connector=96, subject_range=(0, 32), verb_range=(32, 64),
                                   object_range=(64, 96), todd=False)
    typed_syntax = SyntaxProbe(n_samples=32, subjects=(0, 32), verbs=(32, 64), objects=(64, 96), connectors=(96, 100))
    assert torch.equal(fv.pairs(), typed_fv.pairs()) and fv.connector == typed_fv.connector
    assert torch.equal(syntax.prompts(), typed_syntax.prompts())


def test_syntax_reads_the_bound_roles_and_rebinds():
    probe = SyntaxProbe(n_samples=40, prefix=[100])
    for vocab in (_quickstart_vocab(), PCFGDocuments().vocabulary()):  # probe-olmo binds once per checkpoint
        ProbeSuite([probe]).bind(vocab)
        x = probe.prompts()
        for col, role in zip(range(1, 5), ("subjects", "verbs", "objects", "connectors")):
            assert _inside(x[:, col], vocab, role), role


@pytest.mark.parametrize("probe, message", [
    (FunctionVectorProbe(subject_range=(0, 300)),
     r"FunctionVectorProbe\.subject_range: \(0, 300\) is not inside the corpus role 'subjects' \(0, 32\)"),
    (FunctionVectorProbe(connector=950), r"FunctionVectorProbe\.connector: id 950 is not inside the corpus role "
                                         r"'connectors' \(96, 100\)"),
    (SyntaxProbe(verbs=(30, 40)), r"SyntaxProbe\.verbs: \(30, 40\) is not inside the corpus role 'verbs' \(32, 64\)"),
])
def test_explicit_ranges_outside_their_role_are_refused(probe, message):
    with pytest.raises(ProbeError, match=rf"probes\[1\] \({type(probe).__name__}, '{probe.name}'\): {message}"):
        ProbeRunner([ICLProbe(), probe]).bind(_quickstart_vocab())


@pytest.mark.parametrize("probe", [SyntaxProbe(), FunctionVectorProbe(connector=5)])
def test_pcfg_probes_on_ngram_are_refused_naming_them(probe):
    with pytest.raises(ProbeError, match=rf"probes\[0\] \({type(probe).__name__}, '{probe.name}'\): needs the corpus "
                                         r"roles \[.*'subjects'.*\].*it has: content, special"):
        ProbeRunner([probe, ICLProbe()]).bind(NGramCorpus(n_words=50).vocabulary())


def test_fully_explicit_probe_needs_no_roles():
    explicit = dict(connector=60, subject_range=(0, 20), verb_range=(20, 40), object_range=(40, 60))
    probe = FunctionVectorProbe(n_pairs=4, todd=False, **explicit)
    assert probe.required_roles() == ()
    for vocab in (None, NGramCorpus(n_words=80).vocabulary()):  # no corpus; a corpus without these roles
        ProbeSuite([probe]).bind(vocab)
        assert (probe.subject_range, probe.verb_range, probe.object_range, probe.connector) == ((0, 20), (20, 40),
                                                                                               (40, 60), 60)
    half = FunctionVectorProbe(subject_range=(0, 20))  # the others read roles: still refused without them
    assert half.required_roles() == ("verbs", "objects", "connectors")


def test_unbound_probes_use_the_paper_vocabulary_roles():
    paper = PCFGDocuments().vocabulary()
    fv, syntax = FunctionVectorProbe(), SyntaxProbe()
    assert fv.subject_range == paper.roles["subjects"] and fv.connector == paper.roles["connectors"][0]
    assert syntax.ranges == {r: paper.roles[r] for r in ("subjects", "verbs", "objects", "connectors")}
