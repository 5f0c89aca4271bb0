"""McGrath et al. (2023) Hydra effect: direct vs total effect of ablating each attention layer.

With y the correct next token, ``a_j`` attention layer j's output at the last position and
``u = P(γ ⊙ W_U[y]) / σ`` the readout of the *frozen* final norm (the standard linearisation: σ is the
clean run's norm scale, ``P`` centres for LayerNorm and is the identity for RMSNorm, so ``u·h_final`` is
the clean logit up to the norm/head biases)::

    direct_i       = u·(a_i − a_i^abl)                        the removed contribution, read directly
    total_i        = logit_y(clean) − logit_y(ablated run)    what the model actually loses
    compensation_i = direct_i − total_i                       what downstream layers restored
    matrix[i, j]   = E[u·a_j after ablating i − u·a_j clean]  (so matrix[i, i] = −direct_i)

All effects are means over inputs. The ablation replaces the attention output by zeros or by its mean
over the inputs (over the ablated positions). Where it applies (``positions``):

* ``"last"`` (default): the last position only. This is our reading of McGrath et al.: every quantity
  they measure lives in the final token's residual stream, and their resample ablation takes the layer's
  activation from another prompt (of another length), which is only defined position by position at the
  final token. Earlier positions cannot see the last one, so their keys and values are the clean run's:
  the prefix runs once with a KV cache, and the clean row and the L ablations are L + 1 positions of one
  step over it (several inputs a batch), each attending to the prefix and to its own key only (an
  arbitrary mask: the one-token step of each, without a copy of the cache per ablation).
* ``"all"``: every position, a stronger intervention that also changes what the last position's later
  layers attend to. Ablation i leaves layers < i untouched, so all ablations of a chunk of inputs share
  one staggered pass over the layers starting from the clean run's recorded layer inputs: L(L+1)/2
  instead of L² layer passes per input. Its logits are ``lm_head(final_norm(h))``, checked against the
  model's own logits on the clean run.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.probes.intervene import (chunks, frozen_norm_readout, hooks, model_device, output_tensor,
                                         sdpa_probe_mode, token_logits, with_output)
from hierlatent.probes.kvstep import prefill, shared_step

Positions = Literal["last", "all"]


def _attention_mean(model: nn.Module, adapter: ModelAdapter, ids: Tensor, batch_size: int,
                    positions: Positions) -> Tensor:
    """Every attention layer's output averaged over the ablated positions of ``ids`` ``[L, d]``."""
    total = torch.zeros(adapter.n_layers, adapter.d_model, dtype=torch.float64, device=ids.device)

    def make(l: int):
        def fn(module, args, output):
            out = output_tensor(output)
            total[l] += (out[:, -1] if positions == "last" else out).double().reshape(-1, out.shape[-1]).sum(0)
        return fn

    with hooks(*[(adapter.attention(l), "forward", make(l)) for l in range(adapter.n_layers)]):
        for sl in chunks(ids.shape[0], batch_size):
            model(input_ids=ids[sl], use_cache=False, logits_to_keep=1)
    return total / (ids.shape[0] if positions == "last" else ids.numel())


def _last_step(model: nn.Module, adapter: ModelAdapter, cache: Any, step: Tensor,
               repl: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One forward of B inputs × Q new positions after their cached prefix: the L + 1 ablation rows and an
    optional clean follow row.

    ``step`` ``[B, Q]``: column 0 the clean row, column 1 + i ablates attention layer i (all at the prefix's
    next position), column L + 1, if present, the next token after the clean row. ``kvstep.step_mask`` keeps
    the rows apart, so each one sees exactly what a one-token step on its own copy of the cache would; the cache
    is extended in place (by Q positions). Returns logits ``[B, R, V]`` of the R = L + 1 ablation rows,
    attention outputs ``[B, Q, L, d]`` and decoder-layer outputs ``[B, Q, L, d]`` at the new positions.
    """
    L, Q, R = adapter.n_layers, step.shape[1], adapter.n_layers + 1
    hit = torch.zeros(Q, L, dtype=torch.bool, device=step.device)  # [Q, L]: row 1 + i is ablated at layer i
    hit[torch.arange(1, R), torch.arange(L)] = True
    attn: list[Tensor | None] = [None] * L
    layer: list[Tensor | None] = [None] * L

    def make(l: int):
        def fn(module, args, output):
            out = output_tensor(output)  # [B, Q, d]
            if repl is not None:
                out = torch.where(hit[None, :, l, None], repl[l].to(out.dtype), out)
            attn[l] = out
            return with_output(output, out)
        return fn

    def record(l: int):
        return lambda module, args, output: layer.__setitem__(l, output_tensor(output))

    regs = [(adapter.attention(l), "forward", make(l)) for l in range(L)]
    regs += [(adapter.layers[l], "forward", record(l)) for l in range(L)]
    with hooks(*regs):
        logits = shared_step(model, cache, step, rows=R)
    return logits[:, :R], torch.stack(attn, 2), torch.stack(layer, 2)  # L x [B, Q, d] -> [B, Q, L, d]


def _last_chunk(model: nn.Module, adapter: ModelAdapter, ids: Tensor, y: Tensor | None, repl: Tensor,
                follow: Tensor | None = None) -> dict[str, Tensor]:
    """Last-position ablations of a chunk of B inputs: the prefix once, then one step of all ablations.

    Returns ``attn`` [B, L, d] and ``attn_abl`` [i, B, L, d] (last position), ``final`` [B, d], ``logit``
    [B], ``logit_abl`` [i, B], ``y`` and ``layers`` [B, L, d]: the clean decoder-layer outputs at the last
    position, or, with ``follow`` tokens [B], at one more clean position fed ``follow``.
    """
    B, R = ids.shape[0], adapter.n_layers + 1
    cache = prefill(model, ids[:, :-1])
    step = ids[:, -1:].expand(B, R)  # [B, R]: the clean row and one per ablated layer read the same token
    if follow is not None:
        step = torch.cat([step, follow[:, None]], 1)  # [B, R + 1]
    logits, attn, layer_out = _last_step(model, adapter, cache, step, repl)
    y = logits[:, 0].argmax(-1) if y is None else y
    logit = logits.gather(-1, y[:, None, None].expand(B, R, 1))[..., 0]  # [B, R]
    return {"attn": attn[:, 0], "attn_abl": attn[:, 1:R].transpose(0, 1), "final": layer_out[:, 0, -1],
            "logit": logit[:, 0], "logit_abl": logit[:, 1:].T, "y": y,
            "layers": layer_out[:, 0 if follow is None else R]}


def _check_head(clean: Tensor, head: Tensor) -> None:
    """The layer-wise re-runs read logits as lm_head(final_norm(h)); refuse models where that is wrong."""
    tol = 10 * torch.finfo(clean.dtype).eps ** 0.5
    if not torch.allclose(head, clean, rtol=tol, atol=tol):
        raise ProbeError("HydraProbe.mcgrath: lm_head(final_norm(h)) does not reproduce this model's logits "
                         "(logit scaling or soft-capping?); use positions='last' or mcgrath=False")


def _all_chunk(model: nn.Module, adapter: ModelAdapter, ids: Tensor, y: Tensor | None,
               repl: Tensor) -> dict[str, Tensor]:
    """All-position ablations of a chunk of B inputs: the clean run, then one staggered pass.

    At decoder layer j the batch holds (j+1)·B rows (ablations 0…j, i-major), each ablation starting at
    its own layer from the clean run's recorded input to it. Same returns as ``_last_chunk`` except
    ``layers``.
    """
    L, B = adapter.n_layers, ids.shape[0]
    got: list[Tensor | None] = [None] * L
    inputs: dict[int, tuple[tuple, dict]] = {}

    def record(l: int):
        def fn(module, args, output):
            got[l] = output_tensor(output)[:, -1]
        return fn

    def keep(l: int):
        def fn(module, args, kwargs):
            inputs[l] = (args, kwargs)
        return fn

    final: list[Tensor] = []
    regs = [(adapter.attention(l), "forward", record(l)) for l in range(L)]
    regs += [(adapter.layers[l], "pre_kwargs", keep(l)) for l in range(L)]
    regs.append((adapter.layers[L - 1], "forward", lambda m, a, o: final.append(output_tensor(o)[:, -1])))
    with hooks(*regs):
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1]  # [B, V]
    y = logits.argmax(-1) if y is None else y
    logit = token_logits(adapter, model, final[0], y, True)
    _check_head(logits.gather(-1, y[:, None])[:, 0], logit)
    clean_attn = torch.stack(got, 1)  # [B, L, d]
    attn_abl = clean_attn[None].repeat(L, 1, 1, 1)  # [i, B, j, d]; entries j < i stay clean
    h = None
    for j in range(L):
        args, kwargs = inputs[j]
        start = args[0] if args else kwargs["hidden_states"]  # [B, T, d]
        h = start if h is None else torch.cat([h, start])  # [(j+1)·B, T, d]

        def ablate(module, a, output):  # ablation j's rows are the last B
            out = output_tensor(output)
            out = torch.cat([out[:-B], repl[j].to(out.dtype).expand(B, *out.shape[1:])])
            got[j] = out[:, -1]
            return with_output(output, out)

        with hooks((adapter.attention(j), "forward", ablate)):
            h = _call_layer(adapter.layers[j], h, args, kwargs, B, j + 1)
        attn_abl[: j + 1, :, j] = got[j].view(j + 1, B, -1)  # [(j+1)·B, d] -> [j+1, B, d]
    logit_abl = token_logits(adapter, model, h[:, -1].view(L, B, -1), y, True)  # [i, B]
    return {"attn": clean_attn, "attn_abl": attn_abl, "final": final[0], "logit": logit,
            "logit_abl": logit_abl, "y": y}


def _call_layer(layer: nn.Module, h: Tensor, args: tuple, kwargs: dict, batch: int, copies: int) -> Tensor:
    """Run a decoder layer on ``h`` ([copies·batch, T, d]) with the clean call's other arguments.

    Batch-sized tensors among them (an eager attention mask [B, 1, T, T]) are tiled ``copies`` times;
    position tensors have batch dimension 1 and broadcast.
    """
    def tile(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == batch and batch > 1:
            return v.repeat(copies, *[1] * (v.dim() - 1))
        if isinstance(v, (tuple, list)):
            return type(v)(tile(x) for x in v)
        return v

    rest, kw = tile(args[1:]), {k: tile(v) for k, v in kwargs.items() if k != "hidden_states"}
    return output_tensor(layer(h, *rest, **kw) if args else layer(hidden_states=h, **kw))


def hydra_mcgrath(model: nn.Module, inputs: Tensor, targets: Tensor | None = None,
                  ablation: Literal["zero", "mean"] = "zero", batch_size: int = 16,
                  positions: Positions = "last", follow: Tensor | None = None) -> dict[str, Any]:
    """McGrath et al. direct/total/compensation per attention layer and the layer-to-layer matrix.

    Args:
        model: HF causal LM.
        inputs: token ids ``[N, T]`` (also the reference batch of mean ablation).
        targets: correct next token per input ``[N]``; None = the clean run's argmax.
        ablation: replace the attention output by zeros or by its mean over the inputs' ablated positions.
        batch_size: sequences per forward pass. ``positions="last"``: inputs per chunk, whose prefixes run as
            one batch (``batch_size × (T − 1)`` tokens) and whose L + 1 ablations (+ ``follow``) then run as
            L + 1 (+ 1) positions of one step over that KV cache (no copy per ablation); peak memory grows with
            ``batch_size × T``. ``positions="all"``: a sequence is one input under one ablation,
            ``batch_size // L`` inputs a chunk (at least one).
        positions: ablate at the last position only (our reading of McGrath et al.) or at every position.
        follow: with ``positions="last"``, one more token per input ``[N]``: the result then also holds
            ``"layers"``, a tensor [N, L, d] of the clean decoder-layer outputs at that next position
            (without ``follow``: at the last position), so the paper's Δ can reuse this clean prefix.
    """
    if positions not in ("last", "all"):
        raise ProbeError(f"HydraProbe.positions: must be 'last' or 'all', got {positions!r}")
    if follow is not None and positions != "last":
        raise ProbeError("hydra_mcgrath: follow needs positions='last'")
    if inputs.ndim != 2 or inputs.shape[1] < 2:
        raise ProbeError(f"HydraProbe: McGrath inputs must be [n, T >= 2], got shape {tuple(inputs.shape)}")
    adapter = ModelAdapter.from_model(model)
    L = adapter.n_layers
    ids = inputs.to(model_device(model))
    y = None if targets is None else targets.to(ids.device)
    with sdpa_probe_mode(model):
        repl = (_attention_mean(model, adapter, ids, batch_size, positions) if ablation == "mean"
                else torch.zeros(L, adapter.d_model, device=ids.device))  # [L, d]
        follow = None if follow is None else follow.to(ids.device)

        def chunk(sl: slice) -> dict[str, Tensor]:
            ys = None if y is None else y[sl]
            if positions == "all":
                return _all_chunk(model, adapter, ids[sl], ys, repl)
            return _last_chunk(model, adapter, ids[sl], ys, repl, None if follow is None else follow[sl])

        per = batch_size if positions == "last" else max(1, batch_size // L)  # inputs per chunk
        parts = [chunk(sl) for sl in chunks(ids.shape[0], per)]
        r = {k: torch.cat([p[k] for p in parts], 1 if k.endswith("_abl") else 0) for k in parts[0]}
        u = frozen_norm_readout(adapter, r["final"].double(), r["y"]).double()  # [N, d]
        read_clean = torch.einsum("nd,nld->nl", u, r["attn"].double())  # [N, L]
        read_abl = torch.einsum("nd,inld->inl", u, r["attn_abl"].double())  # [i, N, L]
        matrix = (read_abl - read_clean[None]).mean(1)  # [i, j]
        direct = -matrix.diagonal()
        total = (r["logit"].double()[None] - r["logit_abl"].double()).mean(1)  # [i]
    out = {"direct": direct.tolist(), "total": total.tolist(), "compensation": (direct - total).tolist(),
           "matrix": matrix.tolist(), "ablation": ablation, "positions": positions}
    return out if "layers" not in r else {**out, "layers": r["layers"]}
