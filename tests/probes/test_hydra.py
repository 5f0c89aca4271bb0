"""Hydra-effect probes: hand-computed known answers, batched == slow reference, hook/mode hygiene, bad args."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter, probe_mode
from hierlatent.probes.hydra import HydraProbe, hydra_mcgrath, hydra_paper
from hierlatent.probes.intervene import output_tensor
from tests.probes.planted import forbid_sdpa
from tests.probes.reference_hydra_fv import ref_hydra_mcgrath, ref_hydra_paper, tiny_model

ARCHS = ["llama", "gpt2", "neox", "olmo"]


@pytest.fixture(autouse=True)
def _no_grad():
    """Hand computations on parameters need no autograd graph."""
    with torch.no_grad():
        yield


def _max_diff(a, b) -> float:
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    assert torch.equal(a.isnan(), b.isnan())
    return float((a.nan_to_num() - b.nan_to_num()).abs().max())


def _zero_(*modules: nn.Module) -> None:
    for m in modules:
        for p in m.parameters():
            p.data.zero_()


def _rms(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    return norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)


# -- paper-faithful Δ ------------------------------------------------------------------------------------
@pytest.mark.parametrize("final_norm", [False, True])
def test_paper_identity_layers_known_answer(final_norm):
    """Identity layers: h_l = E[g] and the zeroed residual stays 0, so Δ_l^k = W_U[g]·(norm)(E[g])."""
    model = tiny_model("llama", n_layers=4)
    for layer in model.model.layers:
        _zero_(layer.self_attn.o_proj, layer.mlp.down_proj)
    x = torch.randint(0, 1003, (5, 9), generator=torch.Generator().manual_seed(1))
    g = x[:, -1]
    e = model.model.embed_tokens.weight[g]
    h = _rms(e, model.model.norm) if final_norm else e
    expected = float((model.lm_head.weight[g] * h).sum(-1).mean())
    got = hydra_paper(model, x, ks=(1, 2), final_norm=final_norm, batch_size=2)
    assert math.isnan(got[1][0]) and all(math.isnan(v) for v in got[2][:2])
    for k in (1, 2):
        for l in range(k, 4):  # HF's RMSNorm computes in float32 internally, hence the looser tolerance
            assert got[k][l] == pytest.approx(expected, abs=1e-6 if final_norm else 1e-10)


def test_paper_gpt2_bias_known_answer():
    """GPT-2 layers that only add a bias b: clean h_l = E[g]+P[T-1]+(l+1)b, zeroed at l-k: h_l = k·b."""
    L, T = 4, 7
    model = tiny_model("gpt2", n_layers=L)
    b = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for block in model.transformer.h:
        _zero_(block.attn.c_proj, block.mlp.c_proj)
        block.mlp.c_proj.bias.data.copy_(b)
    x = torch.randint(0, 1003, (4, T), generator=torch.Generator().manual_seed(2))
    g, w_u = x[:, -1], model.lm_head.weight
    base = model.transformer.wte.weight[g] + model.transformer.wpe.weight[T - 1]
    got = hydra_paper(model, x, ks=(1, 2), batch_size=3)
    for k in (1, 2):
        for l in range(k, L):
            want = (w_u[g] * (base + (l + 1) * b)).sum(-1).mean() - (w_u[g] * (k * b)).sum(-1).mean()
            assert got[k][l] == pytest.approx(float(want), abs=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_matches_reference(arch):
    model = tiny_model(arch, n_layers=4)
    x = torch.randint(0, 1003, (3, 8), generator=torch.Generator().manual_seed(0))
    for final_norm in (False, True):
        got = hydra_paper(model, x, ks=(1, 2, 3), final_norm=final_norm, batch_size=2)
        ref = ref_hydra_paper(model, x, ks=(1, 2, 3), final_norm=final_norm)
        for k in (1, 2, 3):
            assert _max_diff(got[k], ref[k]) < 1e-9


# -- McGrath et al. --------------------------------------------------------------------------------------
class _Cancel(nn.Module):
    """An MLP that outputs minus the residual's dims [4:8] (where only attention layer 0 writes)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(h)
        out[..., 4:8] = -h[..., 4:8]
        return out


def _cancelling_model() -> nn.Module:
    """Llama, d=8: attention 0 writes dims 4:8; layer 1's MLP erases them; everything else is identity."""
    model = tiny_model("llama", n_layers=3, d_model=8, n_heads=2, seed=5)
    for layer in model.model.layers:
        _zero_(layer.self_attn.o_proj, layer.mlp.down_proj)
    model.model.embed_tokens.weight.data[:, 4:8] = 0
    torch.manual_seed(6)
    model.model.layers[0].self_attn.o_proj.weight.data[4:8] = torch.randn(4, 8, dtype=torch.float64)
    model.model.layers[1].post_attention_layernorm = nn.Identity()
    model.model.layers[1].mlp = _Cancel()
    return model


@pytest.mark.parametrize("positions", ["last", "all"])
def test_mcgrath_full_compensation_known_answer(positions):
    model = _cancelling_model()
    x = torch.randint(0, 1003, (4, 9), generator=torch.Generator().manual_seed(7))
    inputs, y = x[:, :-1], x[:, -1]
    captured = {}
    handle = model.model.layers[0].self_attn.register_forward_hook(
        lambda m, a, o: captured.update(a0=o[0][:, -1].clone()))
    with torch.no_grad():
        model(input_ids=inputs)
    handle.remove()
    h_final = model.model.embed_tokens.weight[inputs[:, -1]]  # dims 4:8 were erased by layer 1
    norm = model.model.norm
    sigma = torch.sqrt(h_final.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    direct0 = float((model.lm_head.weight[y] * norm.weight * captured["a0"] / sigma).sum(-1).mean())
    assert abs(direct0) > 1e-3
    res = hydra_mcgrath(model, inputs, y, ablation="zero", batch_size=5, positions=positions)
    assert res["total"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert res["direct"] == pytest.approx([direct0, 0.0, 0.0], abs=1e-10)
    assert res["compensation"] == pytest.approx(res["direct"], abs=1e-12)
    assert res["matrix"][0] == pytest.approx([-direct0, 0.0, 0.0], abs=1e-10)
    assert res["ablation"] == "zero" and res["positions"] == positions


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("ablation, eager", [("zero", False), ("mean", True)])
@pytest.mark.parametrize("positions, batch_size", [("last", 9), ("last", 3), ("all", 9)])
def test_mcgrath_matches_reference(arch, ablation, eager, positions, batch_size, monkeypatch):
    """Batched == the reference. 3 layers: "all" runs 3 inputs per chunk (3 ablations each; eager = materialised
    masks tiled); "last" with 9 rows runs 2 inputs × 4 rows per step, with 3 rows one input in steps of 3 + 1
    rows, each from its own copy of the prefix cache."""
    model = tiny_model(arch, n_layers=3)
    if eager:  # an architecture without SDPA: the probe stays eager and tiles the [B, 1, T, T] masks
        forbid_sdpa(model, monkeypatch)
    x = torch.randint(0, 1003, (5, 8), generator=torch.Generator().manual_seed(1))
    targets = None if arch in ("gpt2", "olmo") else x[:, -1]  # both target modes
    with probe_mode(model, eager=eager):  # as under ProbeRunner, which holds the model in eager mode
        got = hydra_mcgrath(model, x, targets, ablation=ablation, batch_size=batch_size, positions=positions)
    ref = ref_hydra_mcgrath(model, x, targets, ablation=ablation, positions=positions)
    for key in ("direct", "total", "compensation", "matrix"):
        assert _max_diff(got[key], ref[key]) < 1e-7, key  # eager vs sdpa attention differ by ~1e-9


def test_frozen_readout_reproduces_clean_logit():
    """u·h_final + the norm's bias term is the clean logit (the linearisation is exact at the clean point)."""
    from hierlatent.probes.intervene import frozen_norm_readout

    for arch in ARCHS:
        model = tiny_model(arch)
        ad = ModelAdapter.from_model(model)
        x = torch.randint(0, 1003, (2, 6), generator=torch.Generator().manual_seed(4))
        store = {}
        h = ad.layers[-1].register_forward_hook(lambda m, a, o: store.update(h=(o[0] if isinstance(o, tuple) else o)))
        with torch.no_grad():
            logits = model(input_ids=x).logits[:, -1]
            h.remove()
            hf = store["h"][:, -1]
            y = logits.argmax(-1)
            u = frozen_norm_readout(ad, hf, y)
            bias = getattr(ad.final_norm, "bias", None)
            extra = 0 if bias is None else (ad.unembed[y] * bias).sum(-1)
            assert torch.allclose((u * hf).sum(-1) + extra, logits.gather(-1, y[:, None])[:, 0], atol=1e-10)


# -- the Probe class -------------------------------------------------------------------------------------
def test_probe_json_scalars_columns():
    L = 3
    model = tiny_model("llama", n_layers=L)
    probe = HydraProbe(ks=[1, 2], n_heldout=4, batch_size=3)
    heldout = torch.randint(0, 1003, (6, 10), generator=torch.Generator().manual_seed(0))
    res = probe.run(model, heldout=heldout)
    json.dumps(res, allow_nan=False)
    assert res["paper"]["k1"].keys() == {"1", "2"} and res["paper"]["k2"].keys() == {"2"}
    assert res["paper"]["final_norm"] is False
    ref = ref_hydra_paper(model, heldout[:4], ks=(1, 2))
    assert res["paper"]["k1"]["2"] == pytest.approx(ref[1][2], abs=1e-9)
    mc = res["mcgrath"]
    assert len(mc["direct"]) == len(mc["total"]) == len(mc["compensation"]) == L and mc["ablation"] == "zero"
    assert mc["positions"] == "last"  # McGrath et al.'s scope by default; ablating every position differs
    everywhere = HydraProbe(ks=[1], n_heldout=4, batch_size=3, positions="all").run(model, heldout=heldout)["mcgrath"]
    assert everywhere["positions"] == "all"
    # the last layer's attention only reaches the output through the last position: both scopes agree there
    assert everywhere["total"][L - 1] == pytest.approx(mc["total"][L - 1], abs=1e-12)
    assert all(abs(a - b) > 1e-5 for a, b in zip(everywhere["total"][:-1], mc["total"][:-1]))
    assert len(mc["matrix"]) == L and all(len(row) == L for row in mc["matrix"])
    tags = probe.scalars(res)
    assert tags["hydra/paper_k1/layer1"] == res["paper"]["k1"]["1"] and "hydra/paper_k2/layer2" in tags
    assert tags["hydra/mcgrath/compensation/layer2"] == mc["compensation"][2]
    col = probe.step_columns(res)["hydra_paper_k1"]
    assert math.isnan(col[0]) and col[1:] == [max(0.0, -res["paper"]["k1"][str(l)]) for l in (1, 2)]
    assert probe.heatmaps(res)["hydra_mcgrath_matrix"] == mc["matrix"]


@pytest.mark.parametrize("heldout", [True, False])
def test_paper_delta_shares_mcgraths_clean_prefix(heldout):
    """With McGrath at the last position the paper's clean read-outs come from McGrath's clean prefix (one more
    token for held-out windows): the same Δ as computing them alone."""
    model = tiny_model("gpt2", n_layers=3, n_positions=16)
    x = torch.randint(0, 1003, (5, 9), generator=torch.Generator().manual_seed(3)) if heldout else None
    kw = dict(ks=[1, 2], n_heldout=5, n_random=3, random_len=12, batch_size=5)
    shared = HydraProbe(mcgrath=True, **kw).run(model, heldout=x)
    alone = HydraProbe(mcgrath=False, **kw).run(model, heldout=x)
    assert "layers" not in shared["mcgrath"]
    for k in ("k1", "k2"):
        for l, v in alone["paper"][k].items():
            assert shared["paper"][k][l] == pytest.approx(v, abs=1e-10)


def _numbers(tree) -> list[float]:
    """Every number of a probe result, in a fixed order (dict keys sorted, lists in order)."""
    if isinstance(tree, dict):
        return [v for k in sorted(tree) for v in _numbers(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [v for item in tree for v in _numbers(item)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


@pytest.mark.parametrize("arch, ablation, eager", [("llama", "zero", False), ("gpt2", "mean", False),
                                                   ("neox", "zero", True)])
def test_results_do_not_depend_on_the_chunking(arch, ablation, eager, monkeypatch):
    """batch_size only sets how many windows share a forward (prefill and ablation step): 1, 3 (which does not
    divide the 7 windows), 7 and 16 windows a chunk give the same paper Δ and McGrath effects, held-out
    windows (with the follow row) and random tokens (without) alike."""
    model = tiny_model(arch, n_layers=4, n_positions=16)
    if eager:
        forbid_sdpa(model, monkeypatch)
    heldout = torch.randint(0, 1003, (7, 10), generator=torch.Generator().manual_seed(8))
    for x in (heldout, None):
        runs = [_numbers(HydraProbe(ks=[1, 2], n_heldout=7, n_random=7, random_len=12, ablation=ablation,
                                    batch_size=b).run(model, heldout=x)) for b in (1, 3, 7, 16)]
        assert len(runs[0]) == 3 + 2 + 3 * 4 + 4 * 4  # Δ k=1, 2; direct, total, compensation; the matrix
        assert any(abs(v) > 1e-3 for v in runs[0])
        for other in runs[1:]:
            assert _max_diff(other, runs[0]) <= 1e-6


def test_hooks_removed_after_a_failure_in_the_ablation_step():
    """A forward that raises inside McGrath's ablation step (call 2: the prefix, then the step) leaves no hook."""
    model = tiny_model("llama", n_layers=3)
    calls = {"n": 0}

    def boom(module, args, output):
        calls["n"] += 1
        if calls["n"] == 2:
            assert output_tensor(output).shape[1] == 5  # the step: L + 1 ablation rows and the follow row
            raise RuntimeError("boom")

    handle = model.model.layers[2].register_forward_hook(boom)
    heldout = torch.randint(0, 1003, (2, 6), generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="boom"):
        HydraProbe(ks=[1], n_heldout=2, batch_size=2).run(model, heldout=heldout)
    handle.remove()
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__


def test_probe_random_tokens_without_heldout():
    model = tiny_model("gpt2", n_layers=2, n_positions=16)
    res = HydraProbe(ks=[1], n_random=2, random_len=2048, mcgrath=False).run(model)  # clipped to 16
    assert set(res) == {"paper"} and set(res["paper"]["k1"]) == {"1"}
    again = HydraProbe(ks=[1], n_random=2, random_len=2048, mcgrath=False).run(model)
    assert again == res  # seeded


@pytest.mark.parametrize("kwargs, field", [
    (dict(ks=[]), "HydraProbe.ks"), (dict(ks=[0, 1]), "HydraProbe.ks"), (dict(ks=[1, 3]), "HydraProbe.ks"),
    (dict(n_heldout=0), "HydraProbe.n_heldout"), (dict(random_len=1), "HydraProbe.random_len"),
    (dict(ablation="resample"), "HydraProbe.ablation"), (dict(batch_size=0), "HydraProbe.batch_size"),
    (dict(positions="first"), "HydraProbe.positions"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    model = tiny_model("llama", n_layers=3)
    with pytest.raises(ProbeError, match=field.replace(".", r"\.")):
        HydraProbe(**kwargs).validate(ModelAdapter.from_model(model))


def test_bad_heldout_is_rejected_before_work():
    model = tiny_model("llama", n_layers=3)
    with pytest.raises(ProbeError, match="heldout"):
        HydraProbe().run(model, heldout=torch.full((2, 8), 5000))
    with pytest.raises(ProbeError, match="heldout"):
        HydraProbe().run(model, heldout=torch.zeros(2, 2, dtype=torch.long))


@pytest.mark.parametrize("mcgrath, positions", [(False, "last"), (True, "last"), (True, "all")])
def test_hooks_and_mode_restored_after_a_failure(mcgrath, positions):
    """A forward that raises mid-probe leaves no probe hook behind and the model in train mode."""
    model = tiny_model("llama", n_layers=3)
    model.train()
    calls = {"n": 0}
    # Without McGrath layer 2 runs in calls 1-2 (paper, clean) and 3-4 (paper, zeroed); with it, call 6 is the
    # paper's second zeroed pass ("last": a prefix and a step per window before it) or the paper's clean pass
    # ("all"): each fails while the probe's hooks are on (a failing McGrath step: the test below).
    fail_at = 6 if mcgrath else 3

    def boom(module, args, output):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("boom")

    handle = model.model.layers[2].register_forward_hook(boom)
    probe = HydraProbe(ks=[1], n_heldout=2, batch_size=1, mcgrath=mcgrath, positions=positions)
    heldout = torch.randint(0, 1003, (2, 6), generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="boom"):
        probe.run(model, heldout=heldout)
    handle.remove()
    assert model.training
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__


def test_runs_under_the_probe_runner(tmp_path):
    """Both probes through ProbeRunner: JSON document, scalars and growing layer × step heatmaps (NaN rows)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from hierlatent.callbacks.probes import ProbeRunner
    from hierlatent.probes.function_vectors import FunctionVectorProbe

    model = tiny_model("llama", n_layers=3, dtype=torch.float32)
    runner = ProbeRunner([HydraProbe(n_heldout=2, batch_size=2),
                          FunctionVectorProbe(n_pairs=2, n_icl_prompts=2, n_shots=2, n_top_heads=2)])
    runner.validate(model)
    logger = TensorBoardLogger(tmp_path)
    heldout = torch.randint(0, 1003, (3, 8), generator=torch.Generator().manual_seed(0))
    for step in (1, 2):
        doc = runner.probe_model(model, step=step, json_path=tmp_path / f"step-{step}.json", loggers=[logger],
                                 heldout=heldout)
    saved = json.loads((tmp_path / "step-2.json").read_text())
    assert saved["hydra"]["paper"]["k2"].keys() == {"2"} and len(saved["hydra"]["mcgrath"]["matrix"]) == 3
    assert len(saved["function_vectors"]["improvement"]) == 3 and "top_heads" in saved["function_vectors"]["todd"]
    assert saved == json.loads(json.dumps(doc))
    assert sorted(runner.columns) == ["function_vectors_improvement", "hydra_paper_k1", "hydra_paper_k2"]
    assert sorted(runner.columns["hydra_paper_k1"]) == [1, 2]
