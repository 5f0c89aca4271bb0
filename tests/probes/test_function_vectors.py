"""Function-vector probes: known answers on planted models, batched == slow reference, prompts, bad args."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hierlatent.errors import ProbeError
from hierlatent.probes.function_vectors import FunctionVectorProbe, fv_paper, fv_paper_pairs, fv_todd, icl_prompts, paper_prompts
from tests.probes.reference_hydra_fv import ref_fv_paper, ref_fv_todd, tiny_model

ARCHS = ["llama", "gpt2", "neox", "olmo"]
RANGES = dict(subject_range=(0, 300), verb_range=(300, 600), object_range=(600, 900))


@pytest.fixture(autouse=True)
def _no_grad():
    """Hand computations on parameters need no autograd graph."""
    with torch.no_grad():
        yield


def _zero_(*modules: nn.Module) -> None:
    for m in modules:
        for p in m.parameters():
            p.data.zero_()


def _identity_llama(n_layers: int = 3, d_model: int = 8) -> nn.Module:
    model = tiny_model("llama", n_layers=n_layers, d_model=d_model, n_heads=2, seed=11)
    for layer in model.model.layers:
        _zero_(layer.self_attn.o_proj, layer.mlp.down_proj)
    return model


def _pairs(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    cols = [torch.randint(lo, hi, (n,), generator=gen) for lo, hi in RANGES.values()] * 2
    return torch.stack(cols, 1)  # [n, 6] = s1 v1 o1 s2 v2 o2


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def test_paper_prompt_layout():
    src, gold_src, tgt, gold = paper_prompts(torch.tensor([[1, 301, 601, 2, 302, 602]]), 950)
    assert src.tolist() == [[1, 301, 601, 950, 1, 301]] and gold_src.tolist() == [601]
    assert tgt.tolist() == [[2, 302, 602, 950, 2, 302]] and gold.tolist() == [602]


def test_identity_layers_zero_improvement():
    model = _identity_llama()
    assert fv_paper(model, _pairs(4, 0), batch_size=5) == [0.0, 0.0, 0.0]


def test_planted_uniform_attention_known_improvement():
    """Layer 0 attends uniformly and copies (v = o = I), so it outputs a = mean_t rms(E[x_t]) at the last
    position; lm_head's gold row is 100·a_src. Adding a_src to h raises cos(a_src, h), so the gold logit
    provably rises, by an amount computed here by hand."""
    model = _identity_llama(n_layers=2)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    attn = model.model.layers[0].self_attn
    _zero_(attn.q_proj, attn.k_proj)  # all scores 0 -> uniform causal attention
    attn.v_proj.weight.data.copy_(torch.eye(8, dtype=torch.float64))
    attn.o_proj.weight.data.copy_(torch.eye(8, dtype=torch.float64))
    pairs = _pairs(5, 1)
    pairs[:, 5] = torch.arange(600, 605)  # distinct golds o2
    src, _, tgt, gold = paper_prompts(pairs, 950)
    emb, norm = model.model.embed_tokens.weight, model.model.norm
    a_src = _rms(emb[src], norm.variance_epsilon).mean(1)  # [P, d]
    model.lm_head.weight.data[gold] = 100 * a_src
    h_tgt = emb[tgt[:, -1]] + _rms(emb[tgt], norm.variance_epsilon).mean(1)
    logit = lambda h: (model.lm_head.weight[gold] * norm.weight * _rms(h, norm.variance_epsilon)).sum(-1)  # noqa: E731
    gains = logit(h_tgt + a_src) - logit(h_tgt)
    assert (gains > 0).all()
    got = fv_paper(model, pairs, batch_size=3)
    assert got[0] == pytest.approx(float(gains.mean()), rel=1e-5)  # HF norms compute in float32
    assert got[1] == pytest.approx(0.0, abs=1e-12)  # rows of one batch may round apart (float64)


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_matches_reference(arch):
    model = tiny_model(arch, n_layers=3)
    pairs = _pairs(3, 2)
    src, _, tgt, gold = paper_prompts(pairs, 950)
    got, ref = fv_paper(model, pairs, batch_size=4), ref_fv_paper(model, src, tgt, gold)
    assert max(abs(a - b) for a, b in zip(got, ref)) < 1e-9


# -- Todd et al. ---------------------------------------------------------------------------------------
def test_icl_prompts_layout_and_corruption():
    p = icl_prompts(6, 4, **RANGES, connector=950, seed=3)
    clean, corrupted = p["clean"], p["corrupted"]
    assert clean.shape == corrupted.shape == (6, 18)
    demo = clean[:, :16].view(6, 4, 4)  # [n, shots, (s v o C)]
    assert torch.equal(demo[..., 2], 600 + demo[..., 0] % 300) and (demo[..., 3] == 950).all()
    assert torch.equal(p["gold"], 600 + clean[:, -2] % 300)
    assert torch.equal(p["zero_shot"], clean[:, -2:])
    bad = corrupted[:, :16].view(6, 4, 4)
    assert torch.equal(bad[..., 2], demo[..., 2].roll(-1, 1)) and torch.equal(corrupted[:, -2:], clean[:, -2:])
    assert torch.equal(icl_prompts(6, 4, **RANGES, connector=950, seed=3)["clean"], clean)  # seeded


def test_todd_identity_model_has_no_effect():
    model = _identity_llama()
    res = fv_todd(model, icl_prompts(4, 3, **RANGES, connector=950, seed=0), n_top_heads=2, batch_size=7)
    assert res["cie"] == [[0.0, 0.0]] * 3
    assert res["top_heads"] == [[0, 0], [0, 1]]  # ties keep (layer, head) order
    assert res["fv_accuracy"] == res["zero_shot_accuracy"] and res["gain"] == 0.0 and res["layer"] == 1


def test_todd_only_a_writing_head_has_an_effect():
    """Heads whose o_proj columns are zero cannot change anything: their CIE is exactly 0."""
    model = tiny_model("llama", n_layers=2, d_model=8, n_heads=2, seed=4)
    for l, layer in enumerate(model.model.layers):
        layer.self_attn.o_proj.weight.data[:, :4 if l == 1 else 8] = 0  # only head (1, 1) writes
    res = fv_todd(model, icl_prompts(4, 3, **RANGES, connector=950, seed=1), n_top_heads=1, batch_size=16)
    cie = torch.tensor(res["cie"])
    assert cie[1, 1] != 0 and (cie.flatten()[:3] == 0).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_todd_matches_reference(arch):
    model = tiny_model(arch, n_layers=3)
    prompts = icl_prompts(3, 3, **RANGES, connector=950, seed=5)
    got = fv_todd(model, prompts, n_top_heads=3, fv_layer=1, batch_size=5)
    ref = ref_fv_todd(model, prompts, n_top_heads=3, fv_layer=1)
    diff = (torch.tensor(got["cie"]) - torch.tensor(ref["cie"])).abs().max()
    assert diff < 1e-9
    for key in ("top_heads", "zero_shot_accuracy", "fv_accuracy", "gain", "layer"):
        assert got[key] == ref[key], key


# -- the Probe class -------------------------------------------------------------------------------------
def test_probe_json_scalars_columns():
    model = tiny_model("llama", n_layers=3)
    probe = FunctionVectorProbe(n_pairs=3, n_icl_prompts=3, n_shots=2, n_top_heads=2, batch_size=8)
    res = probe.run(model)
    json.dumps(res, allow_nan=False)
    assert len(res["improvement"]) == 3
    assert res["improvement"] == pytest.approx(fv_paper(model, probe.pairs(), probe.connector), abs=1e-12)
    todd = res["todd"]
    assert len(todd["top_heads"]) == 2 and todd["layer"] == 1
    assert todd["gain"] == todd["fv_accuracy"] - todd["zero_shot_accuracy"]
    tags = probe.scalars(res)
    assert tags["function_vectors/improvement/layer2"] == res["improvement"][2]
    assert tags["function_vectors/todd/gain"] == todd["gain"]
    assert probe.step_columns(res) == {"function_vectors_improvement": res["improvement"]}
    assert probe.heatmaps(res)["function_vectors_todd_cie"] == todd["cie"]


def test_pairs_are_seeded_and_in_range():
    pairs = FunctionVectorProbe().pairs()
    assert pairs.shape == (16, 6) and torch.equal(pairs, FunctionVectorProbe().pairs())
    for col, (lo, hi) in enumerate(list(RANGES.values()) * 2):
        assert ((pairs[:, col] >= lo) & (pairs[:, col] < hi)).all()
    assert not torch.equal(pairs, FunctionVectorProbe(seed=1).pairs())


def test_explicit_prompts_are_used():
    model = tiny_model("gpt2", n_layers=2)
    prompts = [[1, 301, 601, 2, 302, 602], [3, 303, 603, 4, 304, 604]]
    res = FunctionVectorProbe(prompts=prompts, connector=950, todd=False).run(model)
    assert set(res) == {"improvement", "improvement_stderr", "n_pairs"} and res["n_pairs"] == 2
    assert res["improvement"] == pytest.approx(fv_paper(model, torch.tensor(prompts), 950), abs=1e-12)
    diffs = fv_paper_pairs(model, torch.tensor(prompts), 950)  # [L, 2]: the stderr of 2 pairs is |a - b| / 2
    assert res["improvement_stderr"] == pytest.approx(((diffs[:, 0] - diffs[:, 1]).abs() / 2).tolist(), abs=1e-12)


@pytest.mark.parametrize("kwargs, field", [
    (dict(prompts=[[1, 2, 3]]), "prompts"), (dict(prompts=[[1, 2, 3, 4, 5, 2000]]), "prompts"),
    (dict(prompts=[]), "prompts"), (dict(subject_range=(5, 1)), "subject_range"),
    (dict(object_range=(600, 5000)), "object_range"), (dict(connector=1003), "connector"),
    (dict(fv_layer=3), "fv_layer"), (dict(n_pairs=0), "n_pairs"), (dict(n_shots=1), "n_shots"),
    (dict(n_shots=20), "n_shots"), (dict(n_top_heads=0), "n_top_heads"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    model = tiny_model("llama", n_layers=3)  # 1003 tokens, 64 positions
    with pytest.raises(ProbeError, match=rf"FunctionVectorProbe\.{field}"):
        FunctionVectorProbe(**kwargs).run(model)


def test_hooks_and_mode_restored_after_a_failure():
    model = tiny_model("llama", n_layers=2)
    model.train()
    calls = {"n": 0}

    def boom(module, args, output):
        calls["n"] += 1
        if calls["n"] == 3:  # source and clean target passes done: inside the patched run
            raise RuntimeError("boom")

    handle = model.model.layers[1].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        FunctionVectorProbe(n_pairs=2).run(model)
    handle.remove()
    assert model.training
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__
