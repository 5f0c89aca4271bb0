"""One view of the HF causal LMs the probes read: where the decoder layers, attention, norm and unembedding live.

``ModelAdapter.from_model`` maps Llama, OLMo/OLMo-2, GPT-2 and GPT-NeoX (Pythia) onto the same attributes,
so probe code never branches on the architecture. ``probe_mode`` puts a model into the state probes need
(eval, no grads, optionally eager attention so attention weights exist) and restores *everything* on
exit, also when the probe raises: a probe that runs mid-training must leave the run bit-for-bit as it was.
The shared helpers ``attention_patterns``, ``residual_stream`` and ``next_token_logits`` do one batched
forward each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError

# class name -> (base-model attribute, layer list, attention in a layer, final norm, token embedding)
_LAYOUTS: dict[str, tuple[str, str, str, str, str]] = {
    "LlamaForCausalLM": ("model", "layers", "self_attn", "norm", "embed_tokens"),
    "OlmoForCausalLM": ("model", "layers", "self_attn", "norm", "embed_tokens"),
    "Olmo2ForCausalLM": ("model", "layers", "self_attn", "norm", "embed_tokens"),
    "GPT2LMHeadModel": ("transformer", "h", "attn", "ln_f", "wte"),
    "GPTNeoXForCausalLM": ("gpt_neox", "layers", "attention", "final_layer_norm", "embed_in"),
}

# nn.Module hook registries a probe may add to; all are snapshotted and restored by probe_mode.
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")
# transformers v5 installs output-capturing hooks lazily and marks the model with this flag.
_CAPTURE_FLAG = "_output_capturing_hooks_installed"
_IMPL = "_attn_implementation_internal"  # where a transformers v5 config stores its attention implementation


@dataclass(frozen=True, eq=False)
class ModelAdapter:
    """Architecture-independent handles on an HF causal LM.

    Args:
        model: the HF causal LM.
        base: the decoder stack without the head (its output is the final-normed hidden state).
        layers: the decoder layer modules, in order.
        final_norm: the norm applied before the unembedding.
        embed: the token embedding module.
        unembed: the lm_head weight ``[V, d]``.
        n_heads: attention heads per layer.
        d_model: residual stream width.
        vocab_size: rows of the unembedding.
        max_positions: the context length the model was configured for (None if unknown).
        attention_name: the attribute of a decoder layer holding its self-attention.
    """

    model: nn.Module
    base: nn.Module
    layers: nn.ModuleList
    final_norm: nn.Module
    embed: nn.Module
    unembed: Tensor
    n_heads: int
    d_model: int
    vocab_size: int
    max_positions: int | None
    attention_name: str

    @classmethod
    def from_model(cls, model: nn.Module) -> ModelAdapter:
        """Build the adapter of ``model``; ``ProbeError`` names unsupported classes.

        Args:
            model: an HF ``*ForCausalLM`` / ``*LMHeadModel`` instance.
        """
        name = type(model).__name__
        if name not in _LAYOUTS:
            raise ProbeError(f"probes: unsupported model class {name}; supported: {', '.join(sorted(_LAYOUTS))}")
        base_attr, layers_attr, attn_attr, norm_attr, embed_attr = _LAYOUTS[name]
        base, config = getattr(model, base_attr), model.config
        head = model.get_output_embeddings()
        return cls(model=model, base=base, layers=getattr(base, layers_attr), final_norm=getattr(base, norm_attr),
                   embed=getattr(base, embed_attr), unembed=head.weight, n_heads=int(config.num_attention_heads),
                   d_model=int(config.hidden_size), vocab_size=int(head.weight.shape[0]),
                   max_positions=getattr(config, "max_position_embeddings", None), attention_name=attn_attr)

    @property
    def n_layers(self) -> int:
        """Number of decoder layers."""
        return len(self.layers)

    @property
    def device(self) -> torch.device:
        """Device of the unembedding (where inputs go)."""
        return self.unembed.device

    def attention(self, layer: int) -> nn.Module:
        """The self-attention module of decoder layer ``layer``; its output[0] is added to the residual.

        Args:
            layer: 0-based layer index.
        """
        return getattr(self.layers[layer], self.attention_name)


def _configs(model: nn.Module) -> list[Any]:
    """Every distinct config of ``model`` and its sub-models, with their sub-configs."""
    seen: dict[int, Any] = {}
    todo = [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "sub_configs")]
    while todo:
        cfg = todo.pop()
        if id(cfg) not in seen:
            seen[id(cfg)] = cfg
            todo += [getattr(cfg, k) for k in cfg.sub_configs if getattr(cfg, k, None) is not None]
    return list(seen.values())


@contextmanager
def probe_mode(model: nn.Module, eager: bool = True) -> Iterator[nn.Module]:
    """Eval mode, no grads, (optionally) eager attention; afterwards restore everything, even on error.

    Restored: each module's train/eval flag, each parameter's ``requires_grad``, the attention
    implementation of every (sub-)config, every module hook registry (hooks a probe forgot to remove
    disappear, removed ones come back), and transformers' lazily-installed output-capture hooks flag.
    Nesting is fine: an inner ``probe_mode`` restores the outer one's state.

    Args:
        model: the HF model.
        eager: switch attention to the eager implementation (needed for ``output_attentions``).
    """
    modules = list(model.modules())
    modes = [m.training for m in modules]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    hooks = [(m, name, dict(getattr(m, name))) for m in modules for name in _HOOK_DICTS if hasattr(m, name)]
    flags = [(m, m.__dict__.get(_CAPTURE_FLAG, None), _CAPTURE_FLAG in m.__dict__) for m in modules]
    impls = [(cfg, cfg.__dict__.get(_IMPL), _IMPL in cfg.__dict__) for cfg in _configs(model)]
    try:
        model.eval()
        model.requires_grad_(False)
        if eager and getattr(getattr(model, "config", None), "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")
        with torch.no_grad():
            yield model
    finally:
        for m, mode in zip(modules, modes):
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)
        for m, name, snapshot in hooks:
            registry = getattr(m, name)
            registry.clear()
            registry.update(snapshot)
        for m, value, present in flags:
            if present:
                m.__dict__[_CAPTURE_FLAG] = value
            else:
                m.__dict__.pop(_CAPTURE_FLAG, None)
        for cfg, impl, present in impls:
            if present:
                cfg.__dict__[_IMPL] = impl
            else:
                cfg.__dict__.pop(_IMPL, None)


def _batches(tokens: Tensor, batch_size: int | None) -> list[Tensor]:
    return list(tokens.split(batch_size or len(tokens))) if len(tokens) else [tokens]


def attention_patterns(model: nn.Module, tokens: Tensor, batch_size: int | None = None) -> Tensor:
    """Attention weights of every layer and head, from batched forwards with eager attention.

    Args:
        model: the HF causal LM.
        tokens: input ids ``[B, T]``.
        batch_size: sequences per forward (None = all at once).

    Returns:
        ``[L, B, H, T, T]`` float tensor; ``[l, b, h, q, k]`` = weight of key k for query q.
    """
    adapter = ModelAdapter.from_model(model)
    parts = []
    with probe_mode(model, eager=True):
        for chunk in _batches(tokens.to(adapter.device), batch_size):
            out = model(input_ids=chunk, output_attentions=True, use_cache=False)
            if not out.attentions or any(a is None for a in out.attentions):
                raise ProbeError(f"probes: {type(model).__name__} returned no attention weights with eager attention "
                                 f"(attention implementation {model.config._attn_implementation!r})")
            parts.append(torch.stack(out.attentions))  # L x [b, H, T, T] -> [L, b, H, T, T]
    return torch.cat(parts, dim=1)


def residual_stream(model: nn.Module, tokens: Tensor, batch_size: int | None = None) -> Tensor:
    """The residual stream before layer 0 and after every decoder layer (no final norm).

    Args:
        model: the HF causal LM.
        tokens: input ids ``[B, T]``.
        batch_size: sequences per forward (None = all at once).

    Returns:
        ``[L + 1, B, T, d]``: index 0 = input of layer 0, index l + 1 = output of layer l.
    """
    adapter = ModelAdapter.from_model(model)
    parts = []
    with probe_mode(model, eager=False):
        for chunk in _batches(tokens.to(adapter.device), batch_size):
            got: list[Tensor] = []

            def first(module: nn.Module, args: tuple, kwargs: dict) -> None:
                got.append(args[0] if args else kwargs["hidden_states"])

            def after(module: nn.Module, args: tuple, output: Any) -> None:
                got.append(output[0] if isinstance(output, tuple) else output)

            handles = [adapter.layers[0].register_forward_pre_hook(first, with_kwargs=True)]
            handles += [layer.register_forward_hook(after) for layer in adapter.layers]
            try:
                model(input_ids=chunk, use_cache=False)
            finally:
                for h in handles:
                    h.remove()
            parts.append(torch.stack(got))  # (L + 1) x [b, T, d] -> [L + 1, b, T, d]
    return torch.cat(parts, dim=1)


def logits_at(model: nn.Module, tokens: Tensor, positions: Tensor, batch_size: int | None = None) -> Tensor:
    """Logits at a few positions only: the decoder stack, then the head on the gathered hidden states.

    Avoids the ``[B, T, V]`` logits of a full forward (gigabytes for OLMo's 50k vocabulary at T = 2048).

    Args:
        model: the HF causal LM.
        tokens: input ids ``[B, T]``.
        positions: positions ``[P]`` (0-based; logits at t predict token t + 1).
        batch_size: sequences per forward (None = all at once).

    Returns:
        ``[B, P, V]`` logits.
    """
    adapter = ModelAdapter.from_model(model)
    head, positions = model.get_output_embeddings(), positions.to(adapter.device)
    with probe_mode(model, eager=False):
        parts = [head(adapter.base(input_ids=chunk, use_cache=False).last_hidden_state[:, positions])
                 for chunk in _batches(tokens.to(adapter.device), batch_size)]  # each [b, P, V]
    return torch.cat(parts, dim=0)


def next_token_logits(model: nn.Module, tokens: Tensor, batch_size: int | None = None) -> Tensor:
    """Logits of a batched no-grad forward.

    Args:
        model: the HF causal LM.
        tokens: input ids ``[B, T]``.
        batch_size: sequences per forward (None = all at once).

    Returns:
        ``[B, T, V]`` logits (position t predicts token t + 1).
    """
    adapter = ModelAdapter.from_model(model)
    with probe_mode(model, eager=False):
        parts = [model(input_ids=chunk, use_cache=False).logits
                 for chunk in _batches(tokens.to(adapter.device), batch_size)]
    return torch.cat(parts, dim=0)
