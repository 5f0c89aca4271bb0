"""Hydra-effect probes (SPEC §3): the paper-faithful layer-zeroing Δ and McGrath et al. (2023) ablations.

Paper-faithful Δ (the research code's definition, quirks included)::

    Δ_l^k = E_x[ U(h_l)[g] − U(h_l with decoder layer l−k's output set to 0)[g] ]   (last position)

``U`` is ``lm_head`` applied to the hidden state after decoder layer ``l`` *without* the final norm (the
research code's quirk; ``final_norm=True`` applies it) and ``g`` is the last input token. The research
code zeroes the decoder layer's output with a forward hook. In HF that output *is* the residual stream,
so the hook wipes the whole residual at depth ``l−k`` (not just the layer's own contribution): every
later layer starts from the zero tensor, whatever the input. That makes the ablated term a function of
the ablated depth and of ``g`` only, so it is computed with one zeroed forward pass per ablated layer
(a batch of one row per ablated layer, the hook zeroing that row's layer), not once per input; the slow
reference in ``tests/probes/reference_hydra_fv.py`` zeroes per sample and per layer and agrees.

McGrath et al.: ablate one attention layer (output → 0 or → its mean over the reference batch, all
positions); at the last position, with y the correct next token:

* direct effect_i = u·(a_i − a_i^abl), the removed contribution read through the unembedding;
* total effect_i = logit_y(clean) − logit_y(ablated run);
* compensation_i = direct_i − total_i;
* matrix[i, j] = E[u·a_j after ablating i − u·a_j clean]  (so matrix[i, i] = −direct_i).

``a_j`` is attention layer j's output at the last position and ``u = P(γ ⊙ W_U[y]) / σ`` the readout
of the *frozen* final norm (the standard linearisation: the norm's scale σ is the clean run's,
``P`` centres for LayerNorm and is the identity for RMSNorm), so ``u·h_final`` is the clean logit up to
the norm/head biases. All effects are means over inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter, probe_mode
from hierlatent.probes.base import Probe


# -- hook plumbing shared with function_vectors.py --------------------------------------------------
def output_tensor(output: Any) -> Tensor:
    """The hidden-state tensor of a module output (HF modules return a tensor or a tuple led by it)."""
    return output[0] if isinstance(output, tuple) else output


def with_output(output: Any, new: Tensor) -> Any:
    """``output`` with its hidden-state tensor replaced by ``new`` (same container type)."""
    return (new, *output[1:]) if isinstance(output, tuple) else new


@contextmanager
def hooks(*registrations: tuple[nn.Module, str, Any]):
    """Register ``(module, kind, fn)`` hooks (kind: "forward" or "pre") and always remove them."""
    with ExitStack() as stack:
        for module, kind, fn in registrations:
            reg = module.register_forward_hook if kind == "forward" else module.register_forward_pre_hook
            stack.callback(reg(fn).remove)
        yield


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


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# -- paper-faithful Δ ---------------------------------------------------------------------------------
def _layer_outputs_last(model: nn.Module, adapter: ModelAdapter, ids: Tensor, row_zero: Tensor | None,
                        batch_size: int) -> Tensor:
    """Last-position output of every decoder layer ``[R, L, d]``; row r zeroes layer ``row_zero[r]``."""
    L, out = adapter.n_layers, []
    for sl in _chunks(ids.shape[0], batch_size):
        got: list[Tensor | None] = [None] * L
        zero = None if row_zero is None else row_zero[sl].to(ids.device)

        def make(l: int):
            def fn(module, args, output):
                h = output_tensor(output)
                if zero is not None and bool((zero == l).any()):
                    h = h.masked_fill((zero == l)[:, None, None], 0.0)
                    output = with_output(output, h)
                got[l] = h[:, -1]
                return output
            return fn

        with hooks(*[(adapter.layers[l], "forward", make(l)) for l in range(L)]):
            model(input_ids=ids[sl], use_cache=False, logits_to_keep=1)
        out.append(torch.stack(got, 1))  # [r, L, d]
    return torch.cat(out)


def hydra_paper(model: nn.Module, inputs: Tensor, ks: Sequence[int] = (1, 2), final_norm: bool = False,
                batch_size: int = 16) -> dict[int, list[float]]:
    """Paper-faithful Δ_l^k for every k in ``ks``: ``{k: [Δ per layer, NaN for l < k]}``.

    Args:
        model: HF causal LM.
        inputs: token ids ``[N, T]``; g = ``inputs[:, -1]``.
        ks: layer distances k ≥ 1.
        final_norm: apply the final norm before ``lm_head`` (the research code does not).
        batch_size: rows per forward pass.
    """
    adapter = ModelAdapter.from_model(model)
    L = adapter.n_layers
    ids = inputs.to(model_device(model))
    g = ids[:, -1]
    with probe_mode(model, eager=False), torch.no_grad():
        clean = _layer_outputs_last(model, adapter, ids, None, batch_size)  # [N, L, d]
        n_abl = L - min(ks)
        # The zeroed stack is input-independent (module docstring): one row per ablated layer suffices.
        zeroed = _layer_outputs_last(model, adapter, ids[:1].expand(n_abl, -1),
                                     torch.arange(n_abl), batch_size)  # [A, L, d]
        clean_u = token_logits(adapter, model, clean, g[:, None], final_norm).mean(0)  # [L]
        # [A, L, 1, d] against [N] tokens -> [A, L, N] -> mean over inputs
        abl_u = token_logits(adapter, model, zeroed[:, :, None], g, final_norm).mean(-1)  # [A, L]
    clean_u, abl_u = clean_u.tolist(), abl_u.tolist()
    return {int(k): [math.nan] * k + [clean_u[l] - abl_u[l - k][l] for l in range(k, L)] for k in ks}


# -- McGrath et al. 2023 -------------------------------------------------------------------------------
def _attention_run(model: nn.Module, adapter: ModelAdapter, ids: Tensor, y: Tensor | None,
                   row_layer: Tensor | None, replacement: Tensor | None, batch_size: int,
                   want_mean: bool = False) -> dict[str, Tensor]:
    """Forward passes recording every attention layer's last-position output and the final state.

    Row r replaces attention layer ``row_layer[r]``'s output (all positions) by ``replacement[layer]``.
    Returns ``attn`` [R, L, d], ``final`` [R, d] (last layer's residual), ``logit`` [R] (of y, or of the
    argmax when y is None, then also ``y``) and, with ``want_mean``, ``mean`` [L, d] over all tokens.
    """
    L, d = adapter.n_layers, adapter.d_model
    attn, final, logit, ys = [], [], [], []
    total = torch.zeros(L, d, dtype=torch.float64, device=ids.device)
    for sl in _chunks(ids.shape[0], batch_size):
        got: list[Tensor | None] = [None] * L
        rows = None if row_layer is None else row_layer[sl].to(ids.device)

        def make(l: int):
            def fn(module, args, output):
                a = output_tensor(output)
                if rows is not None and bool((rows == l).any()):
                    a = torch.where((rows == l)[:, None, None], replacement[l].to(a.dtype), a)
                    output = with_output(output, a)
                if want_mean:
                    total[l] += a.double().sum((0, 1))
                got[l] = a[:, -1]
                return output
            return fn

        def last(module, args, output):
            final.append(output_tensor(output)[:, -1])

        regs = [(adapter.attention(l), "forward", make(l)) for l in range(L)]
        with hooks(*regs, (adapter.layers[L - 1], "forward", last)):
            logits = model(input_ids=ids[sl], use_cache=False, logits_to_keep=1).logits[:, -1]  # [r, V]
        target = logits.argmax(-1) if y is None else y[sl]
        ys.append(target)
        logit.append(logits.gather(-1, target[:, None])[:, 0])
        attn.append(torch.stack(got, 1))  # [r, L, d]
    out = {"attn": torch.cat(attn), "final": torch.cat(final), "logit": torch.cat(logit), "y": torch.cat(ys)}
    if want_mean:
        out["mean"] = total / (ids.shape[0] * ids.shape[1])
    return out


def hydra_mcgrath(model: nn.Module, inputs: Tensor, targets: Tensor | None = None,
                  ablation: Literal["zero", "mean"] = "zero", batch_size: int = 16) -> dict[str, Any]:
    """McGrath et al. direct/total/compensation per attention layer and the layer-to-layer matrix.

    Args:
        model: HF causal LM.
        inputs: token ids ``[N, T]`` (also the reference batch of mean ablation).
        targets: correct next token per input ``[N]``; None = the clean run's argmax.
        ablation: replace the attention output by zeros or by its mean over all reference tokens.
        batch_size: rows per forward pass.
    """
    adapter = ModelAdapter.from_model(model)
    L = adapter.n_layers
    ids = inputs.to(model_device(model))
    N = ids.shape[0]
    y = None if targets is None else targets.to(ids.device)
    with probe_mode(model, eager=False), torch.no_grad():
        clean = _attention_run(model, adapter, ids, y, None, None, batch_size, ablation == "mean")
        y = clean["y"]
        repl = clean["mean"] if ablation == "mean" else torch.zeros(L, adapter.d_model, device=ids.device)
        row_layer = torch.arange(L, device=ids.device).repeat_interleave(N)  # rows (i, n), i-major
        abl = _attention_run(model, adapter, ids.repeat(L, 1), y.repeat(L), row_layer, repl, batch_size)
        u = frozen_norm_readout(adapter, clean["final"].double(), y).double()  # [N, d]
        read_clean = torch.einsum("nd,nld->nl", u, clean["attn"].double())  # [N, L]
        read_abl = torch.einsum("nd,inld->inl", u, abl["attn"].double().view(L, N, L, -1))  # [L, N, L]
        matrix = (read_abl - read_clean[None]).mean(1)  # [i, j]
        direct = -matrix.diagonal()
        total = (clean["logit"].double()[None] - abl["logit"].double().view(L, N)).mean(1)
    return {"direct": direct.tolist(), "total": total.tolist(), "compensation": (direct - total).tolist(),
            "matrix": matrix.tolist(), "ablation": ablation}
