"""Headwise Hydra: McGrath et al. (2023) direct and total effect of ablating one attention head.

A head is a slice of its attention's output-projection input (``o_proj`` in Llama/OLMo, ``c_proj`` in
GPT-2, ``dense`` in GPT-NeoX): with ``z`` that input and ``s_h`` head h's columns, the head adds
``W_O[:, s_h] z_h`` to the residual stream. Ablating head h of layer l replaces ``z_h`` by zeros or by its
mean over the inputs (over the ablated positions), leaving every other head of the layer as it was. With y
the correct next token and ``u`` the frozen-final-norm readout of the layerwise variant
(``hierlatent.probes.mcgrath``, same convention)::

    direct[l][h]       = u·W_O[:, s_h](z_h − r_h)               the removed contribution, read directly
    total[l][h]        = logit_y(clean) − logit_y(ablated run)  what the model actually loses
    compensation[l][h] = direct − total                         what the rest of the network restored

(means over inputs; ``r_h`` = 0 or the mean). ``positions`` as in the layerwise variant:

* ``"last"`` (default): the last position only. A chunk of inputs runs its prefixes once as one batch with
  a KV cache; the clean read-out and the L·H ablations of each input are then L·H + 1 positions of one step
  over it (``kvstep``: a mask keeps each to the prefix and its own key), in steps of at most
  ``max(T − 1, 64)`` positions, so a step never holds many more positions than the prefix pass did.
* ``"all"``: every position. Ablating a head of layer l leaves layers < l untouched, so the H ablations
  of layer l restart from the clean run's recorded input to layer l (one row per head and input) and run
  layers l … L−1 only; the logits are ``lm_head(final_norm(h))``, checked against the model's own.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.probes.function_vectors import out_proj
from hierlatent.probes.intervene import (chunks, frozen_norm_readout, hooks, model_device, output_tensor,
                                         sdpa_probe_mode, token_logits)
from hierlatent.probes.kvstep import drop, prefill, shared_step
from hierlatent.probes.mcgrath import Positions, _call_layer, _check_head

#: fewest ablation rows a step of the last-position variant holds (short prompts would else step row by row)
MIN_STEP_ROWS = 64


def _head_mask(rows_layer: Tensor, rows_head: Tensor, layer: int, width: int, n_heads: int) -> Tensor:
    """``[R, HD]``: True on head ``rows_head[r]``'s columns in every row r where ``rows_layer[r] == layer``."""
    cols = torch.arange(width, device=rows_head.device) // (width // n_heads)  # [HD] head of each column
    return (rows_layer == layer)[:, None] & (cols[None] == rows_head[:, None])


def _ablate(args: tuple, mask: Tensor, repl: Tensor) -> tuple:
    """``args`` of an output projection with ``args[0]`` (``[..., HD]``) set to ``repl`` [HD] where ``mask``
    (broadcast against it) is True."""
    return (torch.where(mask, repl.to(args[0].dtype), args[0]), *args[1:])


def _proj_input(args: tuple, kwargs: dict, where: str) -> Tensor:
    """The tensor an output projection was called with (positional, or ``input``/``hidden_states``)."""
    for z in (*args[:1], kwargs.get("input"), kwargs.get("hidden_states")):
        if isinstance(z, Tensor):
            return z
    raise ProbeError(f"{where}: the attention's output projection was called without a tensor input")


def head_mean(model: nn.Module, adapter: ModelAdapter, ids: Tensor, batch_size: int, positions: Positions) -> Tensor:
    """Every layer's output-projection input averaged over the ablated positions of ``ids``: ``[L, HD]``.

    Args:
        model: HF causal LM.
        adapter: its adapter.
        ids: token ids ``[N, T]`` on the model's device.
        batch_size: sequences per forward pass.
        positions: average over the last position or over every position.
    """
    total: list[Tensor | float] = [0.0] * adapter.n_layers

    def make(l: int):
        def fn(module, args, kwargs):
            z = _proj_input(args, kwargs, "hydra_headwise")
            total[l] = total[l] + (z[:, -1] if positions == "last" else z).double().reshape(-1, z.shape[-1]).sum(0)
        return fn

    regs = [(out_proj(adapter.attention(l)), "pre_kwargs", make(l)) for l in range(adapter.n_layers)]
    with hooks(*regs):
        for sl in chunks(ids.shape[0], batch_size):
            model(input_ids=ids[sl], use_cache=False, logits_to_keep=1)
    return torch.stack(total) / (ids.shape[0] if positions == "last" else ids.numel())  # type: ignore[arg-type]


def _last_step(model: nn.Module, adapter: ModelAdapter, cache: Any, last: Tensor, group: list[int],
               repl: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of B inputs × the g rows in ``group`` (0 = clean, 1 + l·H + h = ablate head h of layer l) as g
    positions after their cached prefix (``kvstep.shared_step``; the cache is restored to the prefix after).

    Returns logits [B, g, V], the output-projection inputs [B, g, L, HD] (before ablation) and the last
    decoder layer's output [B, g, d].
    """
    L, H, B, g = adapter.n_layers, adapter.n_heads, last.shape[0], len(group)
    code = torch.tensor(group, device=last.device) - 1  # [g]; -1 = clean
    rows_layer, rows_head = code.div(H, rounding_mode="floor"), code.remainder(H)  # clean row: layer -1
    z: list[Tensor | None] = [None] * L
    final: list[Tensor] = []

    def make(l: int):
        def fn(module, args, kwargs):
            z[l] = _proj_input(args, kwargs, "hydra_headwise")  # [B, g, HD]
            return _ablate(args, _head_mask(rows_layer, rows_head, l, z[l].shape[-1], H), repl[l]), kwargs
        return fn

    regs = [(out_proj(adapter.attention(l)), "pre_kwargs", make(l)) for l in range(L)]
    regs.append((adapter.layers[L - 1], "forward", lambda m, a, o: final.append(output_tensor(o))))
    with hooks(*regs):
        logits = shared_step(model, cache, last.expand(B, g))  # [B, g, V]
    drop(cache, g)
    return logits, torch.stack(z, 2), final[0]  # L x [B, g, HD] -> [B, g, L, HD]


def _last_chunk(model: nn.Module, adapter: ModelAdapter, ids: Tensor, y: Tensor | None,
                repl: Tensor) -> dict[str, Tensor]:
    """Last-position head ablations of B inputs: the prefixes once, then steps of at most
    ``max(T − 1, MIN_STEP_ROWS)`` rows per input. Returns clean ``z`` [B, L, HD], ``final`` [B, d], ``logit``
    [B], ``logit_abl`` [B, L·H] and ``y`` [B]."""
    B, R = ids.shape[0], adapter.n_layers * adapter.n_heads + 1
    cache = prefill(model, ids[:, :-1])
    groups = [list(range(R))[sl] for sl in chunks(R, max(ids.shape[1] - 1, MIN_STEP_ROWS))]
    steps = [_last_step(model, adapter, cache, ids[:, -1:], group, repl) for group in groups]
    logits = torch.cat([s[0] for s in steps], 1)  # [B, R, V]; row 0 (the clean run) is in the first group
    y = logits[:, 0].argmax(-1) if y is None else y
    logit = logits.gather(-1, y[:, None, None].expand(B, R, 1))[..., 0]  # [B, R]
    return {"z": steps[0][1][:, 0], "final": steps[0][2][:, 0], "logit": logit[:, 0], "logit_abl": logit[:, 1:],
            "y": y}


def _all_chunk(model: nn.Module, adapter: ModelAdapter, ids: Tensor, y: Tensor | None,
               repl: Tensor) -> dict[str, Tensor]:
    """All-position head ablations of B inputs: the clean run, then per layer l one pass over layers l … L−1
    of H·B rows (head-major) from the clean input to layer l. Same returns as ``_last_chunk``."""
    L, H, B = adapter.n_layers, adapter.n_heads, ids.shape[0]
    z: list[Tensor | None] = [None] * L
    inputs: dict[int, tuple[tuple, dict]] = {}
    final: list[Tensor] = []
    regs = [(out_proj(adapter.attention(l)), "pre_kwargs",
             lambda m, a, k, l=l: z.__setitem__(l, _proj_input(a, k, "hydra_headwise")[:, -1])) for l in range(L)]
    regs += [(adapter.layers[l], "pre_kwargs", lambda m, a, k, l=l: inputs.__setitem__(l, (a, k))) for l in range(L)]
    regs.append((adapter.layers[L - 1], "forward", lambda m, a, o: final.append(output_tensor(o)[:, -1])))
    with hooks(*regs):
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1]  # [B, V]
    y = logits.argmax(-1) if y is None else y
    logit = token_logits(adapter, model, final[0], y, True)
    try:
        _check_head(logits.gather(-1, y[:, None])[:, 0], logit)
    except ProbeError as err:
        raise ProbeError("HydraProbe.headwise: lm_head(final_norm(h)) does not reproduce this model's logits "
                         "(logit scaling or soft-capping?); use positions='last' or headwise=False") from err
    rows_head = torch.arange(H, device=ids.device).repeat_interleave(B)  # [H·B]
    per_layer = []
    for i in range(L):
        mask = _head_mask(torch.full_like(rows_head, i), rows_head, i, repl.shape[-1], H)[:, None]  # [H·B, 1, HD]
        kill = (out_proj(adapter.attention(i)), "pre_kwargs",
                lambda m, a, k, mask=mask, i=i: (_ablate(a, mask, repl[i]), k))
        args, kwargs = inputs[i]
        h = (args[0] if args else kwargs["hidden_states"]).repeat(H, 1, 1)  # [H·B, T, d]
        with hooks(kill):
            for j in range(i, L):
                h = _call_layer(adapter.layers[j], h, *inputs[j], B, H)
        per_layer.append(token_logits(adapter, model, h[:, -1].view(H, B, -1), y, True).T)  # [B, H]
    return {"z": torch.stack(z, 1), "final": final[0], "logit": logit, "logit_abl": torch.cat(per_layer, 1), "y": y}


def head_contributions(adapter: ModelAdapter, delta: Tensor) -> Tensor:
    """What each head adds to the residual for output-projection inputs ``delta`` [N, L, HD]: ``[N, L, H, d]``
    (head h of layer l: ``W_O[:, s_h] delta_h``, through the module itself, so its weight layout and bias
    need no special case; the bias cancels)."""
    L, H, HD = adapter.n_layers, adapter.n_heads, delta.shape[-1]
    own = torch.eye(H, dtype=delta.dtype, device=delta.device).repeat_interleave(HD // H, 1)  # [H, HD] head mask
    out = []
    for l in range(L):
        proj = out_proj(adapter.attention(l))
        x = delta[:, l, None, :] * own  # [N, H, HD]: only head h's slice in row h
        out.append(proj(x) - proj(torch.zeros_like(x[:1, :1])))  # [N, H, d]
    return torch.stack(out, 1)


def _check(inputs: Tensor, targets: Tensor | None, ablation: str, positions: str, batch_size: int, vocab: int) -> None:
    """Name the offending argument of ``hydra_headwise``."""
    if ablation not in ("zero", "mean"):
        raise ProbeError(f"hydra_headwise.ablation: must be 'zero' or 'mean', got {ablation!r}")
    if positions not in ("last", "all"):
        raise ProbeError(f"hydra_headwise.positions: must be 'last' or 'all', got {positions!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ProbeError(f"hydra_headwise.batch_size: must be an integer >= 1, got {batch_size!r}")
    if inputs.ndim != 2 or inputs.shape[0] < 1 or inputs.shape[1] < 2 or inputs.dtype.is_floating_point:
        raise ProbeError(f"hydra_headwise.inputs: must be integer token ids [n >= 1, T >= 2], got "
                         f"{inputs.dtype} of shape {tuple(inputs.shape)}")
    if int(inputs.min()) < 0 or int(inputs.max()) >= vocab:
        raise ProbeError(f"hydra_headwise.inputs: token ids must lie in [0, {vocab})")
    if targets is not None and (targets.shape != inputs.shape[:1] or int(targets.min()) < 0
                                or int(targets.max()) >= vocab):
        raise ProbeError(f"hydra_headwise.targets: must be [n = {inputs.shape[0]}] token ids in [0, {vocab}), "
                         f"got shape {tuple(targets.shape)}")


def hydra_headwise(model: nn.Module, inputs: Tensor, targets: Tensor | None = None,
                   ablation: Literal["zero", "mean"] = "zero", batch_size: int = 16,
                   positions: Positions = "last") -> dict[str, Any]:
    """McGrath et al. direct/total/compensation of every attention head: ``[L][H]`` lists.

    Args:
        model: HF causal LM.
        inputs: token ids ``[N, T]`` (also the reference batch of mean ablation).
        targets: correct next token per input ``[N]``; None = the clean run's argmax.
        ablation: replace the head's output-projection input slice by zeros or by its mean over the inputs'
            ablated positions.
        batch_size: ``positions="last"``: inputs per chunk, whose prefixes run as one batch and whose L·H + 1
            rows then run as positions of steps over that KV cache (peak memory grows with
            ``batch_size × max(T, L·H)``); ``positions="all"``: rows per pass, a row being one input under one
            head ablation (``batch_size // H`` inputs a chunk, at least one).
        positions: ablate at the last position only (McGrath et al.) or at every position.
    """
    adapter = ModelAdapter.from_model(model)
    _check(inputs, targets, ablation, positions, batch_size, adapter.vocab_size)
    L, H = adapter.n_layers, adapter.n_heads
    ids = inputs.to(model_device(model))
    y = None if targets is None else targets.to(ids.device)
    with sdpa_probe_mode(model):
        width = out_proj(adapter.attention(0)).weight.numel() // adapter.d_model  # HD, for either weight layout
        repl = (head_mean(model, adapter, ids, batch_size, positions) if ablation == "mean"
                else torch.zeros(L, width, device=ids.device))  # [L, HD]

        def chunk(sl: slice) -> dict[str, Tensor]:
            ys = None if y is None else y[sl]
            if positions == "all":
                return _all_chunk(model, adapter, ids[sl], ys, repl)
            return _last_chunk(model, adapter, ids[sl], ys, repl)

        per = batch_size if positions == "last" else max(1, batch_size // H)  # inputs per chunk
        parts = [chunk(sl) for sl in chunks(ids.shape[0], per)]
        r = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        u = frozen_norm_readout(adapter, r["final"].double(), r["y"]).double()  # [N, d]
        removed = head_contributions(adapter, r["z"] - repl.to(r["z"].dtype)).double()  # [N, L, H, d]
        direct = torch.einsum("nd,nlhd->lh", u, removed) / ids.shape[0]
        total = (r["logit"].double()[:, None] - r["logit_abl"].double()).mean(0).view(L, H)
    return {"direct": direct.tolist(), "total": total.tolist(), "compensation": (direct - total).tolist(),
            "ablation": ablation, "positions": positions}
