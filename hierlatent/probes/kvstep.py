"""Many variants of one next position as one forward step over a shared KV-cached prefix.

Probes that intervene only at the last position (McGrath's last-position ablations, layer- and headwise;
the paper's function-vector patching) leave every earlier position's keys and values as the clean run's.
So the clean prefix runs once with a KV cache, and the Q variants of each input (the clean read-out, one per
ablation or patch) run as Q new positions of a single step over it. A 4D mask lets query r see the prefix
and its own key only, exactly as if it were the prefix's one next token on its own copy of the cache, but
without Q copies of the cache (``batch_repeat_interleave``) or Q forward calls.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn


def cache_kwarg(model: nn.Module) -> str:
    """The forward's KV-cache argument: ``cache`` in recent transformers, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefill(model: nn.Module, ids: Tensor) -> Any:
    """Run the prefixes ``ids`` ``[B, P]`` with a KV cache and return the cache."""
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    return out["cache"] if "cache" in out else out["past_key_values"]  # renamed in transformers 5.2x


def step_mask(model: nn.Module, batch: int, prefix: int, rows: int, queries: int, device: torch.device) -> Tensor:
    """Attention mask ``[B, 1, Q, P + Q]`` of a step of Q queries over a prefix of P cached positions.

    Query r < R (``rows``) sees the prefix and its own key P + r only, as if it were the prefix's one next
    token; a follow query (r = R, if Q > R) also sees row 0's key P, as the token after row 0. Boolean
    (True = attend) for SDPA; additive for eager attention, which adds the mask to the scores.
    """
    keys = torch.arange(prefix + queries, device=device)
    seen = (keys < prefix) | (keys == prefix + torch.arange(queries, device=device)[:, None])  # [Q, P + Q]
    if queries > rows:
        seen[rows, prefix] = True
    if model.config._attn_implementation != "eager":
        return seen.expand(batch, 1, *seen.shape)
    dtype = next(model.parameters()).dtype
    additive = torch.zeros(seen.shape, dtype=dtype, device=device).masked_fill(~seen, torch.finfo(dtype).min)
    return additive.expand(batch, 1, *seen.shape)


def maskable(model: nn.Module) -> None:
    """SDPA (else eager) attention for ``step_mask``'s arbitrary mask, which flash kernels cannot take; the
    caller's ``probe_mode`` restores the implementation."""
    if model.config._attn_implementation not in ("sdpa", "eager"):
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, ImportError):  # an architecture without SDPA support
            model.set_attn_implementation("eager")


def shared_step(model: nn.Module, cache: Any, step: Tensor, rows: int | None = None) -> Tensor:
    """Logits ``[B, Q, V]`` of the step ``step`` ``[B, Q]`` over ``cache``'s prefix (P positions).

    Columns r < ``rows`` (default all) are variants of the prefix's next position (position P, each seeing
    the prefix and itself); a further column is the token after column 0 (position P + 1). The cache is
    extended in place by Q positions (``drop`` takes them off again). Hooks on the model see ``[B, Q, ·]``
    tensors, column r being variant r.
    """
    B, Q = step.shape
    R = Q if rows is None else rows
    P = cache.get_seq_length()
    maskable(model)
    position = torch.full((B, Q), P, dtype=torch.long, device=step.device)  # [B, Q]; follow one further
    position[:, R:] += 1
    return model(input_ids=step, attention_mask=step_mask(model, B, P, R, Q, step.device), position_ids=position,
                 **{cache_kwarg(model): cache}, use_cache=True, logits_to_keep=Q).logits


def drop(cache: Any, n: int) -> None:
    """Remove the last ``n`` positions from ``cache`` (a step's), so another step can follow the prefix."""
    cache.crop(-n)  # a negative length removes positions in transformers 4.x and 5.x alike
