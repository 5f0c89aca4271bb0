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
reference in ``tests/probes/reference_hydra_fv.py`` zeroes per sample and per layer and agrees. A
consequence worth knowing when reading the numbers: in bias-free models (Llama, OLMo) a zero residual
stays zero (RMSNorm(0) = 0, no biases), so Δ_l^k reduces to the clean U(h_l)[g] for every k; only models
with biases or LayerNorm offsets (GPT-2, GPT-NeoX) give k-dependent ablated terms.

McGrath et al.: ablate one attention layer (output → 0 or → its mean over the reference batch, all
positions); at the last position, with y the correct next token:

* direct effect_i = u·(a_i − a_i^abl), the removed contribution read through the unembedding;
* total effect_i = logit_y(clean) − logit_y(ablated run);
* compensation_i = direct_i − total_i;
* matrix[i, j] = E[u·a_j after ablating i − u·a_j clean]  (so matrix[i, i] = −direct_i).

``a_j`` is attention layer j's output at the last position and ``u = P(γ ⊙ W_U[y]) / σ`` the readout
of the *frozen* final norm (the standard linearisation: the norm's scale σ is the clean run's,
``P`` centres for LayerNorm and is the identity for RMSNorm), so ``u·h_final`` is the clean logit up to
the norm/head biases. All effects are means over inputs. Mean ablation uses the mean of the attention
output over every token of the inputs. Since layers before i do not see the ablation of i, ablation i
starts at decoder layer i from the clean run's recorded layer input, and all ablations of a chunk of inputs
share one staggered pass over the layers; the ablated logits are ``lm_head(final_norm(h))``, checked
against the model's own logits on the clean run.
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


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# -- paper-faithful Δ ---------------------------------------------------------------------------------
def _layer_outputs_last(model: nn.Module, adapter: ModelAdapter, ids: Tensor, row_zero: Tensor | None,
                        batch_size: int) -> Tensor:
    """Last-position output of every decoder layer ``[R, L, d]``; row r zeroes layer ``row_zero[r]``."""
    L, out = adapter.n_layers, []
    for sl in _chunks(ids.shape[0], batch_size):
        got: list[Tensor | None] = [None] * L
        zero = None if row_zero is None else row_zero[sl].cpu()  # checked on the host: no device sync

        def make(l: int):
            def fn(module, args, output):
                h = output_tensor(output)
                if zero is not None and bool((zero == l).any()):
                    h = h.masked_fill((zero == l).to(h.device)[:, None, None], 0.0)
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
    with sdpa_probe_mode(model):
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
def _attention_mean(model: nn.Module, adapter: ModelAdapter, ids: Tensor, batch_size: int) -> Tensor:
    """Every attention layer's output averaged over all tokens of ``ids`` ``[L, d]`` (mean ablation)."""
    total = torch.zeros(adapter.n_layers, adapter.d_model, dtype=torch.float64, device=ids.device)

    def make(l: int):
        def fn(module, args, output):
            total[l] += output_tensor(output).double().sum((0, 1))
        return fn

    with hooks(*[(adapter.attention(l), "forward", make(l)) for l in range(adapter.n_layers)]):
        for sl in _chunks(ids.shape[0], batch_size):
            model(input_ids=ids[sl], use_cache=False, logits_to_keep=1)
    return total / ids.numel()


def _check_head(clean: Tensor, head: Tensor) -> None:
    """The layer-wise re-runs read logits as lm_head(final_norm(h)); refuse models where that is wrong."""
    tol = 10 * torch.finfo(clean.dtype).eps ** 0.5
    if not torch.allclose(head, clean, rtol=tol, atol=tol):
        raise ProbeError("HydraProbe.mcgrath: lm_head(final_norm(h)) does not reproduce this model's logits "
                         "(logit scaling or soft-capping?); run with mcgrath=False")


def _mcgrath_chunk(model: nn.Module, adapter: ModelAdapter, ids: Tensor, y: Tensor | None,
                   repl: Tensor) -> dict[str, Tensor]:
    """Clean run of a chunk of B inputs, then all L ablations in one staggered pass over the layers.

    Ablating attention layer i leaves layers < i untouched, so ablation i's rows start at decoder layer i
    from the clean run's recorded input to it: at layer j the batch holds (j+1)·B rows (ablations 0…j,
    i-major), L(L+1)/2 instead of L² layer passes per input, in L layer calls. Returns ``attn`` [B, L, d]
    and ``attn_abl`` [i, B, L, d] (last position), ``final`` [B, d], ``logit`` [B], ``logit_abl`` [i, B], ``y``.
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
                  ablation: Literal["zero", "mean"] = "zero", batch_size: int = 16) -> dict[str, Any]:
    """McGrath et al. direct/total/compensation per attention layer and the layer-to-layer matrix.

    Args:
        model: HF causal LM.
        inputs: token ids ``[N, T]`` (also the reference batch of mean ablation).
        targets: correct next token per input ``[N]``; None = the clean run's argmax.
        ablation: replace the attention output by zeros or by its mean over all reference tokens.
        batch_size: rows per forward pass (the ablated pass holds n_layers rows per input).
    """
    adapter = ModelAdapter.from_model(model)
    L = adapter.n_layers
    ids = inputs.to(model_device(model))
    y = None if targets is None else targets.to(ids.device)
    with sdpa_probe_mode(model):
        repl = (_attention_mean(model, adapter, ids, batch_size) if ablation == "mean"
                else torch.zeros(L, adapter.d_model, device=ids.device))  # [L, d]
        per = max(1, batch_size // L)  # inputs per chunk: the staggered pass holds up to L rows per input
        parts = [_mcgrath_chunk(model, adapter, ids[sl], None if y is None else y[sl], repl)
                 for sl in _chunks(ids.shape[0], per)]
        r = {k: torch.cat([p[k] for p in parts], 1 if k.endswith("_abl") else 0) for k in parts[0]}
        u = frozen_norm_readout(adapter, r["final"].double(), r["y"]).double()  # [N, d]
        read_clean = torch.einsum("nd,nld->nl", u, r["attn"].double())  # [N, L]
        read_abl = torch.einsum("nd,inld->inl", u, r["attn_abl"].double())  # [i, N, L]
        matrix = (read_abl - read_clean[None]).mean(1)  # [i, j]
        direct = -matrix.diagonal()
        total = (r["logit"].double()[None] - r["logit_abl"].double()).mean(1)  # [i]
    return {"direct": direct.tolist(), "total": total.tolist(), "compensation": (direct - total).tolist(),
            "matrix": matrix.tolist(), "ablation": ablation}


# -- the Probe -----------------------------------------------------------------------------------------
class HydraProbe(Probe):
    """Hydra effect: paper-faithful Δ_l^k (layer zeroing) and, optionally, McGrath et al. ablations.

    Args:
        ks: layer distances k of the paper's Δ_l^k (each ≥ 1 and < the number of layers).
        final_norm: apply the final norm before lm_head in the paper's Δ (the research code does not).
        n_heldout: held-out windows used when the runner provides them (synthetic runs).
        n_random: random-token sequences used without held-out data (OLMo).
        random_len: length of the random sequences (clipped to the model's context).
        mcgrath: also run McGrath et al.'s attention-layer ablations.
        ablation: McGrath ablation, attention output set to zero or to its mean over the inputs.
        batch_size: sequences per forward pass.
        seed: seed of the random-token stimulus.
    """

    name = "hydra"

    def __init__(self, ks: Sequence[int] = (1, 2), final_norm: bool = False, n_heldout: int = 100,
                 n_random: int = 10, random_len: int = 2048, mcgrath: bool = True,
                 ablation: Literal["zero", "mean"] = "zero", batch_size: int = 16, seed: int = 0) -> None:
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
            raise ProbeError(f"HydraProbe.ks: must be a non-empty list of integers >= 1, got {ks!r}")
        for field, value, low in (("n_heldout", n_heldout, 1), ("n_random", n_random, 1),
                                  ("random_len", random_len, 2), ("batch_size", batch_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ProbeError(f"HydraProbe.{field}: must be an integer >= {low}, got {value!r}")
        if ablation not in ("zero", "mean"):
            raise ProbeError(f"HydraProbe.ablation: must be 'zero' or 'mean', got {ablation!r}")
        self.ks, self.final_norm, self.mcgrath, self.ablation = tuple(sorted(set(ks))), final_norm, mcgrath, ablation
        self.n_heldout, self.n_random, self.random_len = n_heldout, n_random, random_len
        self.batch_size, self.seed = batch_size, seed

    def validate(self, adapter: ModelAdapter) -> None:
        """Every k must leave at least one layer l ≥ k.

        Args:
            adapter: the model's adapter.
        """
        if max(self.ks) >= adapter.n_layers:
            raise ProbeError(f"HydraProbe.ks: k={max(self.ks)} needs more than k layers; the model has "
                             f"{adapter.n_layers} (use k <= {adapter.n_layers - 1})")

    def inputs(self, model: nn.Module, heldout: Tensor | None) -> Tensor:
        """The stimulus ``[N, T]``: held-out windows, or seeded uniform random tokens (context-clipped).

        Args:
            model: HF causal LM.
            heldout: held-out windows ``[n, T]`` or None.
        """
        adapter = ModelAdapter.from_model(model)
        context = adapter.max_positions or self.random_len
        if heldout is None:
            shape = (self.n_random, min(self.random_len, context))
            return torch.randint(0, adapter.vocab_size, shape, generator=self.generator())
        if heldout.ndim != 2 or heldout.shape[1] < 3:
            raise ProbeError(f"HydraProbe: heldout windows must be [n, T >= 3], got shape {tuple(heldout.shape)}")
        if heldout.numel() and (int(heldout.min()) < 0 or int(heldout.max()) >= adapter.vocab_size):
            raise ProbeError(f"HydraProbe: heldout token ids must lie in [0, {adapter.vocab_size})")
        return heldout[: self.n_heldout, :context].long()

    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict:
        """The ``hydra`` fragment of the probe JSON (``paper`` and, if enabled, ``mcgrath``).

        Args:
            model: HF causal LM.
            heldout: held-out windows ``[n, T]``; None = random tokens.
        """
        self.validate(ModelAdapter.from_model(model))
        x = self.inputs(model, heldout)
        deltas = hydra_paper(model, x, self.ks, self.final_norm, self.batch_size)
        out: dict[str, Any] = {"paper": {f"k{k}": {str(l): d for l, d in enumerate(deltas[k]) if l >= k}
                                         for k in self.ks}}
        out["paper"]["final_norm"] = self.final_norm
        if self.mcgrath:  # held-out: predict the window's last token; random: the clean argmax
            inp, y = (x[:, :-1], x[:, -1]) if heldout is not None else (x, None)
            out["mcgrath"] = hydra_mcgrath(model, inp, y, self.ablation, self.batch_size)
        return out

    def scalars(self, result: dict) -> dict[str, float]:
        """``hydra/paper_k<k>/layer<l>`` and ``hydra/mcgrath/compensation/layer<l>``.

        Args:
            result: the output of ``run``.
        """
        out = {f"hydra/paper_{k}/layer{l}": v for k, per in result["paper"].items() if k.startswith("k")
               for l, v in per.items()}
        for l, v in enumerate(result.get("mcgrath", {}).get("compensation", [])):
            out[f"hydra/mcgrath/compensation/layer{l}"] = v
        return out

    def heatmaps(self, result: dict) -> dict[str, list]:
        """McGrath's ablated-layer × reading-layer matrix.

        Args:
            result: the output of ``run``.
        """
        return {"hydra_mcgrath_matrix": result["mcgrath"]["matrix"]} if "mcgrath" in result else {}

    def step_columns(self, result: dict) -> dict[str, list]:
        """Per k, the layer column of max(0, −Δ_l^k) (NaN for l < k): Fig. 4's layer × step heatmap.

        Args:
            result: the output of ``run``.
        """
        cols = {}
        for k, per in result["paper"].items():
            if k.startswith("k") and per:
                n_layers = max(int(l) for l in per) + 1
                cols[f"hydra_paper_{k}"] = [max(0.0, -per[str(l)]) if str(l) in per else math.nan
                                            for l in range(n_layers)]
        return cols
