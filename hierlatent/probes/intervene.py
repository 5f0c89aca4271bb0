"""Intervention plumbing shared by the Hydra, McGrath and function-vector probes.

Hooks that are always removed, the hidden-state tensor inside HF module outputs, SDPA for the duration of
a probe that reads no attention weights, and logit readouts that never materialise the full vocabulary.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.probes.adapter import ModelAdapter, probe_mode


def output_tensor(output: Any) -> Tensor:
    """The hidden-state tensor of a module output (HF modules return a tensor or a tuple led by it)."""
    return output[0] if isinstance(output, tuple) else output


def with_output(output: Any, new: Tensor) -> Any:
    """``output`` with its hidden-state tensor replaced by ``new`` (same container type)."""
    return (new, *output[1:]) if isinstance(output, tuple) else new


@contextmanager
def hooks(*registrations: tuple[nn.Module, str, Any]):
    """Register ``(module, kind, fn)`` hooks and always remove them.

    kind: "forward", "pre" (forward pre-hook), "pre_kwargs" (pre-hook also given the kwargs).
    """
    with ExitStack() as stack:
        for module, kind, fn in registrations:
            if kind == "forward":
                handle = module.register_forward_hook(fn)
            else:
                handle = module.register_forward_pre_hook(fn, with_kwargs=kind == "pre_kwargs")
            stack.callback(handle.remove)
        yield


@contextmanager
def sdpa_probe_mode(model: nn.Module):
    """``probe_mode`` with SDPA attention: these probes read no attention weights, and the callback's
    eager mode would materialise [rows, H, T, T] score tensors. The implementation is restored on exit."""
    with probe_mode(model, eager=False):
        if getattr(getattr(model, "config", None), "_attn_implementation", None) == "eager":
            try:
                model.set_attn_implementation("sdpa")
            except (ValueError, ImportError):  # an architecture without SDPA support stays eager
                pass
        yield model


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (inputs are moved there)."""
    return next(model.parameters()).device


def token_logits(adapter: ModelAdapter, model: nn.Module, h: Tensor, ids: Tensor, norm: bool) -> Tensor:
    """``lm_head((final_norm)(h))[ids]`` without materialising the full vocabulary.

    Args:
        adapter: the model's adapter.
        model: the HF causal LM (for the head's bias, if any).
        h: hidden states ``[..., d]``.
        ids: token ids broadcastable to ``h.shape[:-1]``.
        norm: apply the final norm first.
    """
    if norm:
        h = adapter.final_norm(h)
    w = adapter.unembed[ids]  # [..., d]
    out = (h * w).sum(-1)
    bias = getattr(model.get_output_embeddings(), "bias", None)
    return out if bias is None else out + bias[ids]


def frozen_norm_readout(adapter: ModelAdapter, h_final: Tensor, y: Tensor) -> Tensor:
    """Readout vectors ``u`` [N, d] with ``u·c`` = c's logit-y contribution through the frozen final norm.

    Args:
        adapter: the model's adapter.
        h_final: clean residual at the last position after the last layer, ``[N, d]``.
        y: the token whose logit is read, ``[N]``.
    """
    norm = adapter.final_norm
    w = adapter.unembed[y].to(h_final.dtype)  # [N, d]
    gamma = getattr(norm, "weight", None)
    if gamma is not None:
        w = w * gamma
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-5))
    if "rms" in type(norm).__name__.lower():
        sigma = (h_final.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    else:  # LayerNorm (learned or OLMo's parameter-free one): centring is linear, so move it onto w
        w = w - w.mean(-1, keepdim=True)
        sigma = (h_final.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
    return w / sigma


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
