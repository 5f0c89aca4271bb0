"""Syntax probe: closed-form masses on a planted role-bigram model, batched == reference, validation."""

from __future__ import annotations

import math

import pytest
import torch

from hierlatent.callbacks.probes import to_jsonable
from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.probes.syntax import KEYS, SyntaxProbe
from tests.probes.planted import planted_role_bigram_gpt2, tiny_model
from tests.probes.reference_induction import ref_syntax

BETAS = {"subjects": 1.0, "verbs": 2.0, "objects": 0.5, "connectors": 3.0}


def _mass(beta: float) -> float:
    """300 ids of the next role at logit beta, the other 703 ids at 0."""
    return 300 * math.exp(beta) / (300 * math.exp(beta) + 703)


@pytest.mark.parametrize("prefix", [(), (1000,)])
def test_planted_bigram_known_answer(prefix):
    """After a subject / verb / connector the planted model puts exactly the closed-form mass on the next role."""
    model = planted_role_bigram_gpt2(BETAS)
    res = SyntaxProbe(n_samples=20, prefix=prefix, batch_size=7).run(model)
    expected = {"verb_after_subject": _mass(1.0), "object_after_subject_verb": _mass(2.0),
                "subject_after_svoc": _mass(3.0)}
    for key in KEYS:
        assert abs(float(res[key]) - expected[key]) < 1e-9, key


def test_prompts_follow_the_role_layout_and_are_seeded():
    probe = SyntaxProbe(n_samples=50, prefix=[1000], seed=4)
    x = probe.prompts()
    assert x.shape == (50, 5) and bool((x[:, 0] == 1000).all())
    for col, (lo, hi) in zip(range(1, 5), [(0, 300), (300, 600), (600, 900), (900, 1000)]):
        assert int(x[:, col].min()) >= lo and int(x[:, col].max()) < hi
    assert torch.equal(x, probe.prompts())


@pytest.mark.parametrize("arch", ["llama", "gpt2", "olmo"])
def test_batched_equals_reference(arch):
    model = tiny_model(arch, init=0.3)
    probe = SyntaxProbe(n_samples=6, verbs=(300, 500), seed=1)
    got = to_jsonable(probe.run(model))
    ref = ref_syntax(model, probe.prompts(), probe.ranges)
    for key in KEYS:
        assert abs(got[key] - ref[key]) < 1e-9, key
    assert set(probe.scalars(got)) == {f"syntax/{k}" for k in KEYS}
    assert got == to_jsonable(probe.run(model))


def test_validation_names_the_argument():
    adapter = ModelAdapter.from_model(tiny_model("llama", vocab=500, positions=4))
    with pytest.raises(ProbeError, match=r"SyntaxProbe\.objects: range end 900 exceeds the model's vocabulary"):
        SyntaxProbe(verbs=(300, 400), objects=(400, 900), connectors=(450, 500)).validate(adapter)
    with pytest.raises(ProbeError, match=r"SyntaxProbe\.verbs"):
        SyntaxProbe(verbs=(600, 300))
    with pytest.raises(ProbeError, match=r"SyntaxProbe\.prefix"):
        SyntaxProbe(subjects=(0, 10), verbs=(10, 20), objects=(20, 30), connectors=(30, 40),
                    prefix=[600]).validate(adapter)
    with pytest.raises(ProbeError, match=r"SyntaxProbe\.prefix: prompts of 5 tokens exceed the model's context 4"):
        SyntaxProbe(subjects=(0, 10), verbs=(10, 20), objects=(20, 30), connectors=(30, 40),
                    prefix=[1]).validate(adapter)
    with pytest.raises(ProbeError, match=r"SyntaxProbe\.n_samples"):
        SyntaxProbe(n_samples=0)
