"""probe-olmo binds a vocabulary: the corpus's (``--heldout`` / the export's record), else the model's content ids.

Tiny random OLMo and Llama checkpoints saved with ``save_pretrained``; a tiny PCFG corpus for the exports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.cli import main
from hierlatent.corpora.base import Vocabulary
from hierlatent.corpora.pcfg import PCFGDocuments
from hierlatent.corpora.store import build_corpus
from hierlatent.corpora.tokenizer import build_tokenizer
from hierlatent.errors import ProbeError
from hierlatent.olmo.frozen import FrozenCausalLM
from hierlatent.olmo.heldout import content_only_vocabulary, model_vocabulary
from hierlatent.olmo.sweep import probe_olmo
from hierlatent.probes.function_vectors import FunctionVectorProbe
from hierlatent.probes.induction import InductionProbe
from hierlatent.probes.syntax import SyntaxProbe
from tests.olmo.olmo_helpers import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _trainer(*probes) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   callbacks=[ProbeRunner(list(probes), log_images=False)])


@pytest.fixture(scope="module")
def pcfg_corpus(tmp_path_factory) -> Path:
    """A tiny PCFG corpus (S 0-7, V 8-15, O 16-23, C 24-25, special 26-28) in its own cache."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIERLATENT_CACHE", str(cache))
        gen = PCFGDocuments(n_subjects=8, n_verbs=8, n_objects=8, n_connectors=2, n_documents=20, n_test_documents=10,
                            dedupe_test_sentences=False)
        return Path(build_corpus(gen, workers=1, progress=False).path)


@pytest.mark.parametrize("special, content", [
    (set(), (0, 64)), ({1}, (2, 64)), ({0, 1, 63}, (2, 63)), ({10, 11, 12}, (13, 64)), ({30}, (31, 64)), ({33}, (0, 33))])
def test_content_is_the_longest_run_of_non_special_ids(special, content):
    vocab = content_only_vocabulary([f"t{i}" for i in range(64)], special)
    assert vocab.roles == {"content": content}


def test_model_vocabulary_reads_the_tokenizer_else_the_config(tmp_path):
    olmo = FrozenCausalLM(make_checkpoint(tmp_path / "olmo", arch="olmo")).model  # pad 1; eos 50279 is beyond 64
    assert model_vocabulary(olmo).roles == {"content": (2, 64)}
    llama = FrozenCausalLM(make_checkpoint(tmp_path / "llama", arch="llama")).model  # bos 1, eos 2
    assert model_vocabulary(llama).roles == {"content": (3, 64)}
    tokens = tuple(f"w{i}" for i in range(64))
    build_tokenizer(Vocabulary(tokens, {"eos": 10, "unk": 11, "pad": 12})).save_pretrained(tmp_path / "tok")
    with_tok = make_checkpoint(tmp_path / "tok", arch="llama")
    vocab = model_vocabulary(FrozenCausalLM(with_tok).model)
    assert vocab.roles == {"content": (13, 64)} and vocab.tokens[20] == "w20"


def test_role_reading_probe_runs_on_a_model_without_corpus(tmp_path):
    series = tmp_path / "series"
    for i, arch in enumerate(["olmo", "llama"]):
        make_checkpoint(series / f"step{i + 1}00-tokens{i + 1}M", seed=i, arch=arch)
    probe = InductionProbe(n=8, n_samples=2, ks=[1, 2], role="content")
    probe_olmo(_trainer(probe), str(series), tmp_path / "out")
    docs = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*/probes.json"))]
    assert [d["step"] for d in docs] == [100, 200] and all(len(d["induction"]["k_order"]) == 2 for d in docs)
    assert probe.token_range(64) == (3, 64)  # bound last to the Llama revision: its content ids


@pytest.mark.parametrize("probe", [SyntaxProbe(n_samples=4), FunctionVectorProbe(n_pairs=2, todd=False)])
def test_role_needing_probe_is_refused_at_start_up(tmp_path, olmo_series, probe):
    with pytest.raises(ProbeError, match=rf"probes\[1\] \({type(probe).__name__}, '{probe.name}'\): needs the corpus "
                                         r"roles .*only 'content': pass --heldout"):
        probe_olmo(_trainer(InductionProbe(n=8, n_samples=2, ks=[1]), probe), str(olmo_series), tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()  # refused before any checkpoint was probed


@pytest.mark.parametrize("record", [True, False])
def test_export_of_a_corpus_binds_its_roles(tmp_path, pcfg_corpus, record):
    """A fit export recording its corpus (or ``--heldout`` naming it) binds the PCFG roles: FV and syntax run."""
    run = tmp_path / "run"
    ck = make_checkpoint(run / "hf" / "step-10", arch="llama", vocab_size=29)
    if record:
        (ck / "hierlatent.json").write_text(json.dumps({"step": 10, "tokens_seen": 640, "corpus": str(pcfg_corpus)}))
    fv, syntax = FunctionVectorProbe(n_pairs=2, todd=False), SyntaxProbe(n_samples=4)
    probe_olmo(_trainer(fv, syntax), str(run), tmp_path / "out", heldout=None if record else pcfg_corpus)
    doc = json.loads((tmp_path / "out" / "step-10" / "probes.json").read_text())
    assert len(doc["function_vectors"]["improvement"]) == 2 and 0 < doc["syntax"]["verb_after_subject"] < 1
    assert (fv.subject_range, fv.verb_range, fv.object_range, fv.connector) == ((0, 8), (8, 16), (16, 24), 24)
    assert syntax.ranges["connectors"] == (24, 26)
    with pytest.raises(ProbeError, match=r"FunctionVectorProbe\.connector: id 950 is not inside the corpus role"):
        probe_olmo(_trainer(FunctionVectorProbe(connector=950)), str(run), tmp_path / "out2", heldout=pcfg_corpus)


def test_probe_olmo_with_olmo_preset_end_to_end(tmp_path):
    src = tmp_path / "ck"
    sizes = dict(vocab_size=320, num_hidden_layers=3, max_position_embeddings=256)
    for i, step in enumerate([100, 200]):
        make_checkpoint(src / f"step{step}-tokens{i + 1}M", seed=i, **sizes)
    out = tmp_path / "out"
    main(["probe-olmo", "--config", str(ROOT / "callbacks" / "olmo.yaml"), "--checkpoints", str(src),
          "--output_dir", str(out), "--trainer.accelerator", "cpu", "--trainer.logger", "false"])
    assert json.loads((out / "manifest.json").read_text())["summary"]["done"] == 2
    doc = json.loads((out / "step200-tokens2M" / "probes.json").read_text())
    assert doc["step"] == 200 and doc["tokens"] == 2 * 10**6
    assert len(doc["induction"]["k_order"]) == 10 and len(doc["induction"]["k_order_std"]) == 10
    assert set(doc["hydra"]["paper"]["k1"]) == {"1", "2"} and set(doc["hydra"]["paper"]["k2"]) == {"2"}
    assert len(doc["hydra"]["mcgrath"]["compensation"]) == 3
    assert "syntax" not in doc and "function_vectors" not in doc
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("probes/induction/k_order/k1")] == [100, 200]
    assert [e.step for e in acc.Scalars("probes/hydra/paper_k1/layer2")] == [100, 200]
