"""ModelAdapter on every supported architecture, probe_mode's full restore (also on error), shared helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter, attention_patterns, logits_at, probe_mode, residual_stream
from tests.probes.planted import ARCHS, tiny_model


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_fields_and_readout(arch):
    """Sizes match the config; attention(l) output[0] is [B, T, d]; lm_head(final_norm(last layer)) = logits."""
    model = tiny_model(arch, n_layers=3, d_model=16, n_heads=4, vocab=97, positions=40)
    a = ModelAdapter.from_model(model)
    assert (a.n_layers, a.n_heads, a.d_model, a.vocab_size, a.max_positions) == (3, 4, 16, 97, 40)
    assert a.unembed.shape == (97, 16) and a.embed.weight.shape[0] == 97
    x = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(0))
    seen = []
    handles = [a.attention(l).register_forward_hook(lambda m, i, o: seen.append(o[0].shape)) for l in range(3)]
    with probe_mode(model):
        logits = model(input_ids=x).logits
    for h in handles:
        h.remove()
    assert seen == [torch.Size([2, 7, 16])] * 3
    stream = residual_stream(model, x)
    assert stream.shape == (4, 2, 7, 16)
    torch.testing.assert_close(a.final_norm(stream[-1]) @ a.unembed.T, logits)
    positional = model.transformer.wpe(torch.arange(7)) if arch == "gpt2" else 0
    torch.testing.assert_close(stream[0], a.embed(x) + positional)
    pos = torch.tensor([0, 3, 6])
    torch.testing.assert_close(logits_at(model, x, pos), logits[:, pos])


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_patterns_shape_rows_and_batching(arch):
    """[L, B, H, T, T], causal rows summing to 1, independent of the batch split."""
    model = tiny_model(arch, n_layers=2, n_heads=2, init=0.3)
    x = torch.randint(0, 1003, (5, 9), generator=torch.Generator().manual_seed(1))
    p = attention_patterns(model, x)
    assert p.shape == (2, 5, 2, 9, 9)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 5, 2, 9, dtype=p.dtype))
    assert float(p.triu(1).abs().max()) == 0.0
    torch.testing.assert_close(attention_patterns(model, x, batch_size=2), p)


def test_unknown_architecture_names_class_and_supported():
    class Mystery(nn.Module):
        pass

    with pytest.raises(ProbeError, match=r"Mystery.*GPT2LMHeadModel.*GPTNeoXForCausalLM.*LlamaForCausalLM"):
        ModelAdapter.from_model(Mystery())


def _state(model: nn.Module) -> tuple:
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
            model.config._attn_implementation)


def test_probe_mode_restores_everything_on_error():
    """Mixed train/eval, frozen params, a user hook, sdpa: all back after a probe that leaks a hook and raises."""
    model = tiny_model("llama")
    model.train()
    model.model.layers[1].eval()
    model.lm_head.weight.requires_grad_(False)
    calls = []
    user = model.model.layers[0].register_forward_hook(lambda m, i, o: calls.append(1))
    assert model.config._attn_implementation == "sdpa"
    before = _state(model)
    x = torch.randint(0, 1003, (2, 6))
    with pytest.raises(RuntimeError, match="probe failed"):
        with probe_mode(model, eager=True):
            assert not any(m.training for m in model.modules())
            assert not any(p.requires_grad for p in model.parameters())
            assert model.config._attn_implementation == "eager" and not torch.is_grad_enabled()
            model.model.layers[1].register_forward_hook(lambda m, i, o: None)  # leaked
            model.model.layers[0].register_forward_pre_hook(lambda m, i: None)  # leaked
            model(input_ids=x, output_attentions=True)  # installs transformers' capture hooks lazily
            raise RuntimeError("probe failed")
    assert _state(model) == before and torch.is_grad_enabled()
    model(input_ids=x)
    assert len(calls) == 2  # the user's hook survived and still fires
    user.remove()
    # transformers' lazily-installed capture hooks were removed with their flag: attentions still work
    assert attention_patterns(model, x).shape == (2, 2, 2, 6, 6)
    assert _state(model)[3] == "sdpa"


def test_probe_mode_nested_and_grad_training_unaffected():
    """An inner probe_mode (eager=False) restores the outer eager state; gradients flow after exit."""
    model = tiny_model("gpt2")
    model.train()
    with probe_mode(model, eager=True):
        with probe_mode(model, eager=False):
            pass
        assert model.config._attn_implementation == "eager" and not model.training
    assert model.config._attn_implementation == "sdpa" and model.training
    loss = model(input_ids=torch.randint(0, 1003, (2, 5)), labels=torch.randint(0, 1003, (2, 5))).loss
    loss.backward()
    assert model.lm_head.weight.grad is not None
