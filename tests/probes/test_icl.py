"""ICL score: closed-form answers on a planted bigram model, batched == reference, positions, validation."""

from __future__ import annotations

import pytest
import torch

from hierlatent.callbacks.probes import merge_fragment, to_jsonable
from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.probes.icl import ICLProbe
from tests.probes.planted import bigram_logits, planted_role_bigram_gpt2, tiny_model
from tests.probes.reference_induction import ref_icl

BETAS = {"subjects": 1.0, "verbs": 2.0, "objects": 0.5, "connectors": 3.0}


def _windows(n: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 1003, (n, length), generator=torch.Generator().manual_seed(seed))


def test_planted_bigram_known_answer():
    """Loss at p is −log softmax(B[x[p−1]])[x[p]] with the planted table B: score computed without the model."""
    model = planted_role_bigram_gpt2(BETAS)
    windows = _windows(6, 16)
    res = ICLProbe(n_windows=6, early_position=2, late_position=13, batch_size=4).run(model, heldout=windows)
    expected = 0.0
    for row in windows:
        logp = bigram_logits(row, BETAS).log_softmax(-1)
        expected += float(logp[1, row[2]] - logp[12, row[13]]) / len(windows)
    assert res["early_position"] == 2 and res["late_position"] == 13
    assert abs(float(res["score"]) - expected) < 1e-9


def test_context_free_model_scores_zero():
    """Equal betas of 0: every position has loss log V, so late − early = 0 exactly."""
    model = planted_role_bigram_gpt2({})
    res = ICLProbe(n_windows=3).run(model, heldout=_windows(3, 16))
    assert abs(float(res["score"])) < 1e-12


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox", "olmo2"])
def test_batched_equals_reference(arch):
    model = tiny_model(arch, init=0.3, positions=64)
    windows = _windows(5, 40, seed=2)
    res = ICLProbe(n_windows=4, batch_size=3).run(model, heldout=windows)
    assert (res["early_position"], res["late_position"]) == (4, 39)  # defaults: T // 10 and T − 1
    ref = ref_icl(model, windows[:4], 4, 39)
    assert abs(float(res["score"]) - ref) < 1e-9


def test_windows_are_clipped_to_the_context_and_defaults_scale():
    model = tiny_model("llama", positions=64)
    res = ICLProbe(n_windows=2).run(model, heldout=_windows(2, 100))
    assert (res["early_position"], res["late_position"]) == (6, 63)
    assert ICLProbe().positions(512) == (51, 511) and ICLProbe().positions(5) == (1, 4)


def test_fragment_nests_under_induction_and_logs():
    model = tiny_model("gpt2", positions=64)
    probe = ICLProbe(n_windows=2)
    res = to_jsonable(probe.run(model, heldout=_windows(2, 20)))
    doc = {"induction": {"standard": 0.5}}
    merge_fragment(doc, probe.name, res)
    assert doc["induction"]["standard"] == 0.5 and set(doc["induction"]["icl"]) == {"score", "early_position",
                                                                                    "late_position"}
    assert set(probe.scalars(res)) == {"induction/icl"}
    assert res == to_jsonable(probe.run(model, heldout=_windows(2, 20)))


def test_validation_names_the_argument():
    model = tiny_model("llama", positions=64)
    adapter = ModelAdapter.from_model(model)
    with pytest.raises(ProbeError, match=r"ICLProbe\.late_position: 64 is outside the model's context 64"):
        ICLProbe(late_position=64).validate(adapter)
    with pytest.raises(ProbeError, match=r"ICLProbe\.early_position"):
        ICLProbe(early_position=10, late_position=10)
    with pytest.raises(ProbeError, match=r"ICLProbe\.n_windows"):
        ICLProbe(n_windows=0)
    with pytest.raises(ProbeError, match=r"ICLProbe: needs held-out windows"):
        ICLProbe().run(model)
    with pytest.raises(ProbeError, match=r"ICLProbe\.late_position: 30 does not fit windows of 20 tokens"):
        ICLProbe(late_position=30).run(model, heldout=_windows(2, 20))
    with pytest.raises(ProbeError, match=r"heldout token ids"):
        ICLProbe().run(model, heldout=torch.full((2, 20), 5000))
