"""The research code's stimulus choices (docs/research.md#stimuli) beside ours: random-token ids in
[100, V − 100), V from the tokenizer rather than the lm_head rows, and the first consecutive held-out windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.corpora.base import Vocabulary
from hierlatent.corpora.tokenizer import save_tokenizer
from hierlatent.data.windows import TokenWindows, first_windows, sample_windows
from hierlatent.errors import ProbeError
from hierlatent.probes.hydra import HydraProbe
from hierlatent.probes.induction import InductionProbe
from hierlatent.probes.stimuli import random_id_range, tokenizer_vocab_size, vocab_bound

ROOT = Path(__file__).resolve().parents[2]
ROWS, TOKENS = 320, 250  # a padded embedding: 320 lm_head rows, 250 tokenizer ids


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """A tiny Llama with 320 embedding rows saved beside a 250-id tokenizer, loaded back from its directory."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("padded")
    _tiny().save_pretrained(out)
    save_tokenizer(Vocabulary(tuple(f"t{i}" for i in range(TOKENS - 1)) + ("[UNK]",), {"unk": TOKENS - 1}),
                   out / "tok")
    for f in (out / "tok").iterdir():
        f.rename(out / f.name)
    return AutoModelForCausalLM.from_pretrained(str(out)).eval()


def _tiny() -> torch.nn.Module:
    """A 3-layer Llama with ``ROWS`` embedding rows, built in memory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=ROWS, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))


def _probe_from(preset: str, cls: type) -> object:
    """The probe of class ``cls`` as a callbacks preset configures it."""
    runner = yaml.safe_load((ROOT / "callbacks" / preset).read_text())["trainer"]["callbacks"][0]["init_args"]
    (args,) = [p["init_args"] for p in runner["probes+"] if p["class_path"].endswith(cls.__name__)]
    return cls(**args)


def test_random_id_range_full_and_research():
    assert random_id_range(1003, "full", "x") == (0, 1003)
    assert random_id_range(1003, "research", "x") == (100, 903)
    with pytest.raises(ProbeError, match="HydraProbe.random_ids"):
        random_id_range(200, "research", "HydraProbe.random_ids")
    with pytest.raises(ProbeError, match="random_ids"):
        HydraProbe(random_ids="middle")


def test_tokenizer_bound_differs_from_padded_rows(padded):
    assert tokenizer_vocab_size(padded) == TOKENS
    assert vocab_bound(padded, ROWS, "tokenizer") == TOKENS
    assert vocab_bound(padded, ROWS, "model") == ROWS
    assert vocab_bound(_tiny(), ROWS, "tokenizer") == ROWS  # built in memory (fit): the rows are the vocabulary


def test_hydra_random_tokens_research_range(padded):
    full = HydraProbe(n_random=40, random_len=64).inputs(padded, None)
    assert torch.equal(full, torch.randint(0, ROWS, (40, 64), generator=torch.Generator().manual_seed(0)))  # unchanged
    research = HydraProbe(n_random=40, random_len=64, random_ids="research", vocab="tokenizer").inputs(padded, None)
    assert int(research.min()) >= 100 and int(research.max()) < TOKENS - 100
    rows = HydraProbe(n_random=40, random_len=64, random_ids="research").inputs(padded, None)
    assert int(rows.max()) >= TOKENS - 100  # with 320 rows as V, ids up to 219 occur


def test_induction_token_high_from_tokenizer(padded):
    probe = InductionProbe(n=8, n_samples=4, ks=[1, 2], vocab="tokenizer")
    assert probe.token_range(vocab_bound(padded, ROWS, probe.vocab)) == (100, TOKENS - 100)
    assert set(probe.run(padded)) >= {"k_order", "standard"}


def test_first_windows_are_consecutive_chunks():
    stream = np.arange(1000) % 251
    windows = TokenWindows.from_arrays([stream[:300], stream[300:]], context_window=64)  # spans a shard boundary
    got = first_windows(windows, 5)
    assert torch.equal(got, torch.as_tensor(stream[: 5 * 64].reshape(5, 64), dtype=torch.long))
    assert first_windows(windows, 100).shape == (15, 64)  # fewer when the split holds fewer windows
    assert not torch.equal(sample_windows(windows, 5, 0), got)


def test_runner_passes_heldout_offsets():
    seen = []

    class DataModule:
        def heldout_windows(self, n, seed, offsets="random"):
            seen.append((n, seed, offsets))
            return torch.zeros(n, 8, dtype=torch.long)

    trainer = type("T", (), {"datamodule": DataModule()})()
    runner = ProbeRunner([HydraProbe()], n_heldout=7, heldout_offsets="first")
    assert runner._heldout_windows(trainer).shape == (7, 8) and seen == [(7, 0, "first")]
    with pytest.raises(ProbeError, match="heldout_offsets"):
        ProbeRunner([HydraProbe()], heldout_offsets="last")


def test_presets_default_to_the_research_stimuli(padded):
    """paper.yaml and olmo.yaml draw random Hydra ids in [100, V_tokenizer − 100) on the padded model."""
    for preset in ("paper.yaml", "olmo.yaml"):
        hydra = _probe_from(preset, HydraProbe)
        hydra.random_len, hydra.n_random = 64, 20
        x = hydra.inputs(padded, None)
        assert int(x.min()) >= 100 and int(x.max()) < TOKENS - 100, preset
        induction = _probe_from(preset, InductionProbe)
        assert induction.token_range(vocab_bound(padded, ROWS, induction.vocab)) == (100, TOKENS - 100), preset
