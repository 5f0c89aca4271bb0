"""Headwise Hydra: batched == the one-head-at-a-time reference, a planted compensating head, probe wiring, bad args."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import probe_mode
from hierlatent.probes.headwise import hydra_headwise
from hierlatent.probes.hydra import HydraProbe
from tests.probes.planted import _gpt2, forbid_sdpa
from tests.probes.reference_headwise import ref_hydra_headwise
from tests.probes.reference_hydra_fv import tiny_model

ARCHS = ["llama", "gpt2", "neox", "olmo"]
KEYS = ("direct", "total", "compensation")


def _max_diff(a: list, b: list) -> float:
    return float((torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)).abs().max())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("positions, batch_size", [("last", 16), ("last", 5), ("all", 3)])
def test_headwise_matches_reference(arch, ablation, positions, batch_size):
    """3 layers × 2 heads = 7 rows per input, one step over each chunk's prefix: all 4 inputs a chunk at 16, 4 + 0
    at 5 (the "last" batch size counts inputs); "all" runs one input (2 heads) a chunk at 3."""
    model = tiny_model(arch, n_layers=3)
    x = torch.randint(0, 1003, (4, 8), generator=torch.Generator().manual_seed(1))
    targets = None if arch in ("gpt2", "olmo") else x[:, -1]  # both target modes
    got = hydra_headwise(model, x, targets, ablation=ablation, batch_size=batch_size, positions=positions)
    ref = ref_hydra_headwise(model, x, targets, ablation=ablation, positions=positions)
    assert max(abs(v) for row in ref["total"] for v in row) > 1e-4  # the effects are not all ~0
    for key in KEYS:
        assert len(got[key]) == 3 and all(len(row) == 2 for row in got[key])
        assert _max_diff(got[key], ref[key]) < 1e-9, key  # observed ~1e-17 in float64; brief asks 1e-5
    assert got["ablation"] == ablation and got["positions"] == positions


@pytest.mark.parametrize("min_rows", [1, 2, 3])
def test_headwise_steps_of_few_rows_match_one_step(monkeypatch, min_rows):
    """Rows split over several steps of one prefix cache (each step's positions dropped before the next) give
    the one-step numbers: 2-token inputs (prefix 1) step at most max(1, min_rows) rows at a time."""
    import hierlatent.probes.headwise as headwise

    model = tiny_model("llama", n_layers=3)
    x = torch.randint(0, 1003, (3, 2), generator=torch.Generator().manual_seed(4))
    one = hydra_headwise(model, x, None, ablation="mean", batch_size=2)
    monkeypatch.setattr(headwise, "MIN_STEP_ROWS", min_rows)
    steps = []
    real = headwise._last_step
    monkeypatch.setattr(headwise, "_last_step", lambda *a: steps.append(len(a[4])) or real(*a))
    got = hydra_headwise(model, x, None, ablation="mean", batch_size=2)
    groups = [min_rows] * (7 // min_rows) + ([7 % min_rows] if 7 % min_rows else [])  # 7 rows per input
    assert steps == groups * 2  # two chunks (2 + 1 inputs)
    for key in KEYS:
        assert _max_diff(got[key], one[key]) < 1e-9, key


def test_headwise_eager_attention_matches_reference(monkeypatch):
    """An architecture without SDPA stays eager: the "all" restarts tile its materialised [B, 1, T, T] masks."""
    model = tiny_model("llama", n_layers=3)
    forbid_sdpa(model, monkeypatch)
    x = torch.randint(0, 1003, (3, 7), generator=torch.Generator().manual_seed(2))
    for positions in ("last", "all"):
        with probe_mode(model, eager=True):
            got = hydra_headwise(model, x, x[:, -1], ablation="mean", batch_size=4, positions=positions)
        ref = ref_hydra_headwise(model, x, x[:, -1], ablation="mean", positions=positions)
        for key in KEYS:
            assert _max_diff(got[key], ref[key]) < 1e-7, key  # eager vs sdpa attention differ by ~1e-9


def compensating_gpt2(T: int = 8, beta: float = 80.0, seed: int = 0) -> nn.Module:
    """2-layer, 2-head GPT-2 (d = 32, float64) where layer 1 head 1 exactly undoes layer 0 head 0.

    Residual dims: 0:8 random token code, 8:8+T one-hot position, 16:20 written by head (0, 0): its value is
    the token dims 0:4 under uniform causal attention. Head (1, 1) sees the raw residual (layer 1's ln_1 is
    the identity), attends to its own position (query/key = β·position one-hot; leakage e^{-80}) and writes
    minus dims 16:20. So at every position the two cancel: ablating head (0, 0) anywhere changes no logit
    (total 0) while its direct effect is u·a_00 ≠ 0. All other heads, and the MLPs, are zero.
    """
    V, d, hd = 32, 32, 16
    model = _gpt2(V, T, d, n_layer=2, n_head=2, tie=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tr = model.transformer
        tr.wte.weight.zero_()
        tr.wte.weight[:, :8] = torch.randn(V, 8, generator=g, dtype=torch.float64)
        tr.wpe.weight.zero_()
        tr.wpe.weight[:, 8:8 + T] = torch.eye(T, dtype=torch.float64)
        model.lm_head.weight.copy_(torch.randn(V, d, generator=g, dtype=torch.float64))
        a0, a1 = (blk.attn for blk in tr.h)  # c_attn weight [d, 3d] = q | k | v; Conv1D weights are [in, out]
        for i in range(4):
            a0.c_attn.weight[i, 2 * d + i] = 1.0  # head 0 value: token dims 0:4
            a0.c_proj.weight[i, 16 + i] = 1.0  # ... written to dims 16:20
            a1.c_attn.weight[16 + i, 2 * d + hd + i] = 1.0  # head 1 value: dims 16:20
            a1.c_proj.weight[hd + i, 16 + i] = -1.0  # ... subtracted from them
        tr.h[1].ln_1 = nn.Identity()
        for t in range(T):
            a1.c_attn.weight[8 + t, hd + t] = beta  # head 1 query: position t
            a1.c_attn.weight[8 + t, d + hd + t] = 1.0  # head 1 key: position t
    return model


@pytest.mark.parametrize("positions", ["last", "all"])
def test_planted_head_fully_compensated(positions):
    model = compensating_gpt2()
    x = torch.randint(0, 32, (5, 8), generator=torch.Generator().manual_seed(3))
    res = hydra_headwise(model, x[:, :-1], x[:, -1], ablation="zero", batch_size=16, positions=positions)
    direct = res["direct"][0][0]
    assert abs(direct) > 0.05
    assert res["total"][0][0] == pytest.approx(0.0, abs=1e-12)
    assert res["compensation"][0][0] == pytest.approx(direct, abs=1e-12)
    # the compensating head's own contribution is the exact negative; the two zero heads do nothing
    assert res["direct"][1][1] == pytest.approx(-direct, abs=1e-12)
    for l, h in ((0, 1), (1, 0)):
        assert res["direct"][l][h] == 0.0 and res["total"][l][h] == pytest.approx(0.0, abs=1e-12)
    ref = ref_hydra_headwise(model, x[:, :-1], x[:, -1], ablation="zero", positions=positions)
    for key in KEYS:
        assert _max_diff(res[key], ref[key]) < 1e-12, key


def test_probe_headwise_json_scalars_heatmap():
    model = tiny_model("llama", n_layers=3)
    heldout = torch.randint(0, 1003, (4, 9), generator=torch.Generator().manual_seed(0))
    probe = HydraProbe(ks=[1], n_heldout=3, batch_size=8, headwise=True)
    res = probe.run(model, heldout=heldout)
    json.dumps(res, allow_nan=False)
    hw = res["headwise"]
    assert set(hw) == {"direct", "total", "compensation", "ablation", "positions"}
    ref = ref_hydra_headwise(model, heldout[:3, :-1], heldout[:3, -1])
    for key in KEYS:
        assert _max_diff(hw[key], ref[key]) < 1e-9, key
    tags = probe.scalars(res)
    assert [tags[f"hydra/headwise/max_compensation/layer{l}"] for l in range(3)] == [max(r) for r in hw["compensation"]]
    assert probe.heatmaps(res)["hydra_headwise_compensation"] == hw["compensation"]
    assert "headwise" not in HydraProbe(ks=[1], n_heldout=3, mcgrath=False).run(model, heldout=heldout)


def test_probe_headwise_random_tokens_use_the_clean_argmax():
    model = tiny_model("gpt2", n_layers=2, n_positions=12)
    probe = HydraProbe(ks=[1], n_random=2, random_len=12, mcgrath=False, headwise=True, ablation="mean")
    res = probe.run(model)["headwise"]
    x = probe.inputs(model, None)
    ref = ref_hydra_headwise(model, x, None, ablation="mean")
    assert _max_diff(res["total"], ref["total"]) < 1e-9 and res["ablation"] == "mean"


@pytest.mark.parametrize("kwargs, field", [
    (dict(ablation="resample"), "hydra_headwise.ablation"), (dict(positions="first"), "hydra_headwise.positions"),
    (dict(batch_size=0), "hydra_headwise.batch_size"), (dict(inputs=torch.zeros(3, 1, dtype=torch.long)),
                                                        "hydra_headwise.inputs"),
    (dict(inputs=torch.zeros(2, 5)), "hydra_headwise.inputs"), (dict(inputs=torch.full((2, 5), 5000)),
                                                                "hydra_headwise.inputs"),
    (dict(targets=torch.zeros(3, dtype=torch.long)), "hydra_headwise.targets"),
])
def test_bad_arguments_name_the_argument(kwargs, field):
    model = tiny_model("llama", n_layers=2)
    args = dict(inputs=torch.zeros(2, 5, dtype=torch.long), targets=None) | kwargs
    with pytest.raises(ProbeError, match=field.replace(".", r"\.")):
        hydra_headwise(model, **args)


def test_probe_headwise_flag_is_checked():
    with pytest.raises(ProbeError, match=r"HydraProbe\.headwise"):
        HydraProbe(headwise="yes")


def test_headwise_under_the_probe_runner(tmp_path):
    """Through ProbeRunner with a TensorBoard logger: the JSON holds hydra.headwise and the heatmap renders."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from hierlatent.callbacks.probes import ProbeRunner

    model = tiny_model("llama", n_layers=2, dtype=torch.float32)
    runner = ProbeRunner([HydraProbe(ks=[1], n_heldout=2, batch_size=4, headwise=True)])
    runner.validate(model)
    heldout = torch.randint(0, 1003, (2, 8), generator=torch.Generator().manual_seed(0))
    runner.probe_model(model, step=1, json_path=tmp_path / "step-1.json", loggers=[TensorBoardLogger(tmp_path)],
                       heldout=heldout)
    saved = json.loads((tmp_path / "step-1.json").read_text())["hydra"]["headwise"]
    assert len(saved["compensation"]) == 2 and all(len(row) == 2 for row in saved["compensation"])
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.rglob("*"))


def test_all_positions_refuses_a_head_it_cannot_reproduce():
    """The "all" restarts read logits as lm_head(final_norm(h)); a model whose logits differ is refused by name."""
    model = tiny_model("llama", n_layers=2)
    model.lm_head.register_forward_hook(lambda m, a, o: 2 * o)  # stands in for logit scaling
    x = torch.randint(0, 1003, (2, 6), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ProbeError, match=r"HydraProbe\.headwise"):
        hydra_headwise(model, x, positions="all")
