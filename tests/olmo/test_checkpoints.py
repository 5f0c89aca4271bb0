"""Discovery, step parsing, revision selection, weights hashing and frozen loading of checkpoint series."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from hierlatent.errors import CheckpointError, ConfigError
from hierlatent.olmo import checkpoints as ck
from tests.olmo.olmo_helpers import make_checkpoint


@pytest.mark.parametrize(
    "name,expected",
    [("step20000-tokens84B", (20000, 84 * 10**9)), ("step738020-tokens3095B", (738020, 3095 * 10**9)),
     ("step143000", (143000, None)), ("step-1200", (1200, None)), ("step5-tokens7M", (5, 7 * 10**6)),
     ("step5-tokens123", (5, 123)), ("stage1-step9-tokens2K", (9, 2000)), ("STEP_3", (3, None)), ("main", None)],
)
def test_parse_revision(name, expected):
    assert ck.parse_revision(name) == expected


def test_discover_local_series_sorted_by_step(olmo_series):
    refs = ck.discover(str(olmo_series))
    assert [r.step for r in refs] == [0, 1000, 2000, 3000]
    assert refs[1].tokens == 4 * 10**9 and refs[1].revision == "step1000-tokens4B"


def test_discover_single_dir_list_and_fit_hf_dir(tmp_path, olmo_series):
    one = ck.discover(str(olmo_series / "step2000-tokens8B"))
    assert [r.revision for r in one] == ["step2000-tokens8B"]
    two = ck.discover([str(olmo_series / "step2000-tokens8B"), str(olmo_series / "step0-tokens0B")])
    assert [r.step for r in two] == [0, 2000]
    run = tmp_path / "run"  # a fit run: <log_dir>/hf/step-<N>/ with hierlatent.json
    for step, arch in [(10, "llama"), (20, "neox")]:
        d = make_checkpoint(run / "hf" / f"step-{step}", seed=step, arch=arch)
        (d / "hierlatent.json").write_text(json.dumps({"step": step, "tokens_seen": step * 512}))
    (run / "hf" / ".step-30.tmp").mkdir()  # half-written export: ignored
    refs = ck.discover(str(run))
    assert [(r.step, r.tokens) for r in refs] == [(10, 5120), (20, 10240)]


def test_selection(olmo_series):
    refs = ck.discover(str(olmo_series))
    assert [r.step for r in ck.select_revisions(refs, "every:2")] == [0, 2000]
    assert [r.step for r in ck.select_revisions(refs, "steps:1000-2000")] == [1000, 2000]
    assert [r.step for r in ck.select_revisions(refs, "step3000-tokens12B,step0-tokens0B")] == [3000, 0]
    assert [r.step for r in ck.select_revisions(refs, ["step0-tokens0B"])] == [0]
    with pytest.raises(ConfigError, match="--revisions: unknown"):
        ck.select_revisions(refs, "step999")
    with pytest.raises(ConfigError, match="--revisions"):
        ck.select_revisions(refs, "every:0")
    with pytest.raises(ConfigError, match="--revisions"):
        ck.select_revisions(refs, "steps:10-")


def test_bad_source(tmp_path):
    with pytest.raises(CheckpointError, match="--checkpoints"):
        ck.discover(str(tmp_path / "nope" / "x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoints"):
        ck.discover(str(tmp_path / "empty"))


def test_weights_hash_detects_identical_copies(tmp_path, olmo_series):
    a = olmo_series / "step1000-tokens4B"
    b = tmp_path / "copy"
    shutil.copytree(a, b)
    assert ck.weights_hash(a) == ck.weights_hash(b) != ck.weights_hash(olmo_series / "step2000-tokens8B")
    import hashlib

    (fname,) = [p.name for p in ck.weight_files(a)]
    expected = ck.combine_file_hashes({fname: hashlib.sha256((a / fname).read_bytes()).hexdigest()})
    assert ck.weights_hash(a) == expected


def test_hub_selection_and_hash_with_monkeypatched_hub(monkeypatch):
    import huggingface_hub

    branches = [SimpleNamespace(name=n, target_commit=f"c{i:040d}"[-40:]) for i, n in enumerate(
        ["main", "step1000-tokens4B", "step3000-tokens12B", "step2000-tokens8B", "step143000"])]
    monkeypatch.setattr(huggingface_hub, "list_repo_refs", lambda repo: SimpleNamespace(branches=branches))
    refs = ck.discover("allenai/OLMo-1B-hf", "steps:1000-3000")
    assert [r.revision for r in refs] == ["step1000-tokens4B", "step2000-tokens8B", "step3000-tokens12B"]
    assert refs[0].source == "hub:allenai/OLMo-1B-hf" and refs[0].commit == branches[1].target_commit
    assert refs[0].path is None
    every = ck.discover("allenai/OLMo-1B-hf", "every:2")
    assert [r.revision for r in every] == ["step1000-tokens4B", "step3000-tokens12B", "main"]

    files = [SimpleNamespace(path="model.safetensors", lfs=SimpleNamespace(sha256="ab" * 32)),
             SimpleNamespace(path="config.json", lfs=None)]

    class Api:
        def list_repo_tree(self, repo, revision=None, recursive=False):
            assert repo == "allenai/OLMo-1B-hf" and revision == refs[0].commit
            return files

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    assert ck.hub_weights_hash(refs[0]) == ck.combine_file_hashes({"model.safetensors": "ab" * 32})


def test_frozen_checkpoint_loads_eval_without_grads(tmp_path, olmo_series):
    """The loaded model is in eval mode, has no trainable parameters, sits in the resolved dtype; bad input is one error."""
    from hierlatent.olmo.frozen import FrozenCausalLM

    frozen = FrozenCausalLM(olmo_series / "step1000-tokens4B", dtype="float32")
    assert not frozen.model.training and not any(p.requires_grad for p in frozen.model.parameters())
    assert frozen.dtype == torch.float32 == next(frozen.model.parameters()).dtype
    with pytest.raises(ConfigError, match="dtype: .*'float64'"):
        FrozenCausalLM(olmo_series / "step1000-tokens4B", dtype="float64")  # type: ignore[arg-type]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json missing"):
        FrozenCausalLM(tmp_path / "empty")
