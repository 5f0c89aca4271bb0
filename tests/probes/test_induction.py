"""Induction probes: planted known answers, uniform-attention answers, batched == slow reference, validation."""

from __future__ import annotations

import json

import pytest
import torch

from hierlatent.callbacks.probes import to_jsonable
from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter, attention_patterns
from hierlatent.probes.induction import (InductionProbe, diagonal_mean, induction_scores, k_order_scores,
                                         repeated_random_tokens)
from tests.probes.planted import planted_induction_gpt2, tiny_model
from tests.probes.reference_induction import ref_induction

N, KS = 16, list(range(1, 11))


def test_stimulus_is_repeated_in_range_and_seeded():
    x = repeated_random_tokens(8, 3, 100, 110, torch.Generator().manual_seed(5))
    assert x.shape == (3, 16) and torch.equal(x[:, :8], x[:, 8:])
    assert int(x.min()) >= 100 and int(x.max()) < 110
    assert torch.equal(x, repeated_random_tokens(8, 3, 100, 110, torch.Generator().manual_seed(5)))


def test_scores_of_hand_written_patterns():
    """A pattern that is one-hot on a known diagonal scores exactly 1 there and 0 on the others."""
    T = 2 * N
    dup = torch.zeros(T, T)
    dup[torch.arange(N, T), torch.arange(N)] = 1.0
    assert float(diagonal_mean(dup, N)) == 1.0 and float(diagonal_mean(dup, N - 1, start=1)) == 0.0
    assert torch.equal(k_order_scores(dup, N, KS), torch.ones(10))
    half = dup.clone()
    half[N + 3, 3] = 0.0  # query n+3 lost its target: only orders k <= 3 see the hole
    expect = torch.tensor([1 - 1 / (N - k) if k <= 3 else 1.0 for k in KS])
    torch.testing.assert_close(k_order_scores(half, N, KS), expect)


def test_planted_duplicate_previous_and_induction_heads(planted, unique_stimulus):
    """Each planted head scores ≈1 on its own diagonal and ≈0 on the others; the zero head is uniform."""
    res = induction_scores(attention_patterns(planted, unique_stimulus), N, KS)
    ph = res["per_head"]
    # layer 0 head 0 duplicate-token: paper k-order (same-token offset n) ≈ 1, standard induction ≈ 0
    assert ph["duplicate"][0, 0] > 0.999 and ph["k_order"][:, 0, 0].min() > 0.999
    assert ph["standard"][0, 0] < 1e-6
    # layer 0 head 1 previous-token
    assert ph["previous"][0, 1] > 0.999 and ph["duplicate"][0, 1] < 1e-6
    # layer 1 head 0 induction: standard ≈ 1, but the paper's k-order score (offset n) ≈ 0
    assert ph["standard"][1, 0] > 0.999
    assert ph["k_order"][:, 1, 0].max() < 1e-6 and ph["duplicate"][1, 0] < 1e-6
    # layer 1 head 1 is zero: uniform causal attention, A[q, k] = 1 / (q + 1)
    uniform_k = torch.tensor([sum(1 / (N + k + i + 1) for i in range(N - k)) / (N - k) for k in KS])
    torch.testing.assert_close(ph["k_order"][:, 1, 1], uniform_k.double())
    torch.testing.assert_close(ph["standard"][1, 1], torch.tensor(sum(1 / (N + i + 1) for i in range(N)) / N).double())
    assert res["k_order"].min() > 0.999 and res["standard"] > 0.999 and res["previous"] > 0.999


def test_paper_score_misses_a_pure_induction_head(unique_stimulus):
    """Without the duplicate head the paper's k-order max stays near uniform although induction ≈ 1."""
    model = planted_induction_gpt2(duplicate=False)
    res = induction_scores(attention_patterns(model, unique_stimulus), N, KS)
    assert res["standard"] > 0.999 and res["k_order"].max() < 0.06


def test_shifted_offset_changes_the_result(planted, unique_stimulus):
    """Reading the duplicate head one diagonal off (or with the wrong half length) loses the score."""
    p = attention_patterns(planted, unique_stimulus).mean(1)[0, 0]  # [L, B, H, T, T] -> layer 0 head 0 [T, T]
    assert float(diagonal_mean(p, N)) > 0.999
    assert float(diagonal_mean(p, N + 1)) < 1e-6 and float(diagonal_mean(p, N - 1, start=1)) < 1e-6
    assert float(k_order_scores(p, N - 1, [1])[0]) < 1e-6


def test_small_init_model_is_uniform():
    """A randomly initialised model with tiny weights attends uniformly: scores = mean of 1 / (query + 1)."""
    model = tiny_model("gpt2", n_layers=2, init=1e-5)
    probe = InductionProbe(n=N, n_samples=4, ks=KS, token_low=100, seed=3)
    res = probe.run(model)
    uniform_k = [sum(1 / (N + k + i + 1) for i in range(N - k)) / (N - k) for k in KS]
    torch.testing.assert_close(res["k_order"], torch.tensor(uniform_k).double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(float(res["previous"]), sum(1 / (t + 1) for t in range(1, 2 * N)) / (2 * N - 1),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch,aggregate", [("llama", "mean_pattern"), ("gpt2", "per_sample_max"),
                                            ("neox", "mean_pattern"), ("olmo", "per_sample_max")])
def test_batched_equals_reference(arch, aggregate):
    model = tiny_model(arch, n_layers=2, n_heads=2, init=0.5, seed=1)
    probe = InductionProbe(n=8, n_samples=3, ks=(1, 2, 5), aggregate=aggregate, seed=7)
    got = to_jsonable(probe.run(model))
    ref = ref_induction(model, probe.stimulus(1003), 8, [1, 2, 5], aggregate)
    keys = ["k_order", "standard", "duplicate", "previous"] + (["k_order_std"] if aggregate != "mean_pattern" else [])
    for key in keys:
        torch.testing.assert_close(torch.tensor(got[key], dtype=torch.float64),
                                   torch.tensor(ref[key], dtype=torch.float64), atol=1e-9, rtol=0)
    for key, value in ref["per_head"].items():
        torch.testing.assert_close(torch.tensor(got["per_head"][key], dtype=torch.float64),
                                   torch.tensor(value, dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("aggregate", ["mean_pattern", "per_sample_max"])
def test_scores_do_not_depend_on_the_batch_size(aggregate, monkeypatch):
    """batch_size only chunks the forwards: 1, 3 (not a divisor of the 7 samples), 7 and None give the same
    scores; None runs forwards of at most DEFAULT_BATCH samples (set to 2 here: 2 + 2 + 2 + 1)."""
    import hierlatent.probes.induction as induction

    monkeypatch.setattr(induction, "DEFAULT_BATCH", 2)
    model = tiny_model("llama", n_layers=2, n_heads=2, init=0.5, seed=2)
    batches: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a, kw: batches.append(kw["input_ids"].shape[0]),
                                             with_kwargs=True)
    runs = [to_jsonable(InductionProbe(n=8, n_samples=7, ks=(1, 3), aggregate=aggregate, batch_size=b).run(model))
            for b in (None, 1, 3, 7)]
    handle.remove()
    assert batches[:4] == [2, 2, 2, 1] and batches[-1] == 7
    flat = [torch.cat([torch.tensor(v, dtype=torch.float64).flatten() for v in
                       (r[k] for k in sorted(r) if k != "per_head")] +
                      [torch.tensor(r["per_head"][k], dtype=torch.float64).flatten() for k in sorted(r["per_head"])])
            for r in runs]
    assert flat[0].std() > 1e-3
    for other in flat[1:]:
        torch.testing.assert_close(other, flat[0], atol=1e-12, rtol=0)


def test_probe_is_pure_and_logs(planted):
    """Same model ⇒ same output (seeded stimulus); JSON-able; tags and images as in ARCHITECTURE.md."""
    probe = InductionProbe(n=N, n_samples=4, ks=(1, 2), token_low=0, token_high=48, seed=1)
    a, b = to_jsonable(probe.run(planted)), to_jsonable(probe.run(planted))
    assert a == b
    json.dumps(a)
    assert set(a) == {"k_order", "standard", "duplicate", "previous", "per_head"}
    assert set(probe.scalars(a)) == {"induction/k_order/k1", "induction/k_order/k2", "induction/standard",
                                     "induction/duplicate", "induction/previous"}
    maps = probe.heatmaps(a)
    assert torch.tensor(maps["induction_standard"]).shape == (2, 2)
    cols = probe.step_columns(a)
    column = cols["induction_standard_by_layer"]
    assert len(column) == 2 and column[1] > 0.5  # < 1: repeats within r (48 ids) dilute it
    per_sample = InductionProbe(n=N, n_samples=4, ks=(1, 2), aggregate="per_sample_max", token_low=0, token_high=48)
    assert len(to_jsonable(per_sample.run(planted))["k_order_std"]) == 2


def test_validation_names_the_argument():
    adapter = ModelAdapter.from_model(tiny_model("llama", positions=512))
    with pytest.raises(ProbeError, match=r"InductionProbe\.n: .*600 tokens exceeds the model's context 512"):
        InductionProbe(n=300).validate(adapter)
    with pytest.raises(ProbeError, match=r"InductionProbe\.token_high: 2000 exceeds the vocabulary size 1003"):
        InductionProbe(token_high=2000).validate(adapter)
    with pytest.raises(ProbeError, match=r"InductionProbe\.token_low"):
        InductionProbe(token_low=950).validate(adapter)
    with pytest.raises(ProbeError, match=r"InductionProbe\.ks"):
        InductionProbe(n=8, ks=(1, 8))
    with pytest.raises(ProbeError, match=r"InductionProbe\.ks"):
        InductionProbe(ks=(0,))
    with pytest.raises(ProbeError, match=r"InductionProbe\.aggregate"):
        InductionProbe(aggregate="max")
    with pytest.raises(ProbeError, match=r"InductionProbe\.n_samples"):
        InductionProbe(n_samples=0)
    InductionProbe().validate(adapter)


def test_probe_runner_document_and_logging(tmp_path, planted):
    """Through the ProbeRunner: one document with induction (+ nested icl) and syntax; every scalar logged."""
    from hierlatent.callbacks.probes import ProbeRunner
    from hierlatent.probes.icl import ICLProbe
    from hierlatent.probes.syntax import SyntaxProbe

    class Recorder:
        def __init__(self) -> None:
            self.metrics: dict = {}

        def log_metrics(self, metrics: dict, step: int) -> None:
            self.metrics.update(metrics)

    probes = [InductionProbe(n=N, n_samples=2, ks=(1, 2), token_low=0, token_high=48), ICLProbe(n_windows=2),
              SyntaxProbe(n_samples=3, subjects=(0, 10), verbs=(10, 20), objects=(20, 30), connectors=(30, 40))]
    runner = ProbeRunner(probes=probes)
    runner.validate(planted)
    log = Recorder()
    heldout = torch.randint(0, 48, (2, 32), generator=torch.Generator().manual_seed(0))
    planted.train()
    doc = runner.probe_model(planted, step=7, tokens=100, json_path=tmp_path / "step-7.json", loggers=[log],
                             heldout=heldout)
    assert planted.training and planted.config._attn_implementation == "sdpa"
    saved = json.loads((tmp_path / "step-7.json").read_text())
    assert saved["step"] == 7 and set(saved["induction"]["icl"]) == {"score", "early_position", "late_position"}
    assert saved["induction"]["standard"] > 0.5 and set(saved["syntax"]) == {"verb_after_subject",
                                                                            "object_after_subject_verb",
                                                                            "subject_after_svoc"}
    assert doc["induction"]["k_order"] == saved["induction"]["k_order"]
    assert {"probes/induction/k_order/k1", "probes/induction/standard", "probes/induction/icl",
            "probes/syntax/verb_after_subject"} <= set(log.metrics)
