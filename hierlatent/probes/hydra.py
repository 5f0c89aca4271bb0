"""Hydra-effect probes (docs/research.md#hydra-paper): the paper-faithful layer-zeroing Δ and McGrath et al. (2023) ablations.

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

McGrath et al.'s direct/total effects of ablating each attention layer (``mcgrath=True``) live in
``hierlatent.probes.mcgrath``; the probe runs them on the same inputs (held-out windows: predict each
window's last token from the rest; random tokens: the clean run's argmax), and their head-by-head version
(``headwise=True``) lives in ``hierlatent.probes.headwise``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.corpora.base import Vocabulary
from hierlatent.probes.base import Probe, role_range
from hierlatent.probes.intervene import (chunks, hooks, model_device, output_tensor, sdpa_probe_mode, token_logits,
                                         with_output)
from hierlatent.probes.headwise import hydra_headwise
from hierlatent.probes.mcgrath import Positions, hydra_mcgrath
from hierlatent.probes.query_stimuli import query_crop
from hierlatent.probes.stimuli import RandomIds, VocabSource, random_id_range, random_tokens, vocab_bound


# -- paper-faithful Δ ---------------------------------------------------------------------------------
def _layer_outputs_last(model: nn.Module, adapter: ModelAdapter, ids: Tensor, row_zero: Tensor | None,
                        batch_size: int) -> Tensor:
    """Last-position output of every decoder layer ``[R, L, d]``; row r zeroes layer ``row_zero[r]``."""
    L, out = adapter.n_layers, []
    for sl in chunks(ids.shape[0], batch_size):
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
                batch_size: int = 16, clean: Tensor | None = None) -> dict[int, list[float]]:
    """Paper-faithful Δ_l^k for every k in ``ks``: ``{k: [Δ per layer, NaN for l < k]}``.

    Args:
        model: HF causal LM.
        inputs: token ids ``[N, T]``; g = ``inputs[:, -1]``.
        ks: layer distances k ≥ 1.
        final_norm: apply the final norm before ``lm_head`` (the research code does not).
        batch_size: rows per forward pass.
        clean: the clean decoder-layer outputs at the last position ``[N, L, d]`` if already computed
            (``hydra_mcgrath`` returns them from its clean prefix); None = one clean forward pass here.
    """
    adapter = ModelAdapter.from_model(model)
    L = adapter.n_layers
    ids = inputs.to(model_device(model))
    g = ids[:, -1]
    with sdpa_probe_mode(model):
        if clean is None:
            clean = _layer_outputs_last(model, adapter, ids, None, batch_size)  # [N, L, d]
        n_abl = L - min(ks)
        # The zeroed stack is input-independent (module docstring), and position-independent too: from the
        # zeroed depth on every position holds the same state (attention averages identical values). So one
        # row per ablated layer and a single token suffice.
        zeroed = _layer_outputs_last(model, adapter, ids[:1, -1:].expand(n_abl, 1),
                                     torch.arange(n_abl), batch_size)  # [A, L, d]
        clean_u = token_logits(adapter, model, clean, g[:, None], final_norm).mean(0)  # [L]
        # [A, L, 1, d] against [N] tokens -> [A, L, N] -> mean over inputs
        abl_u = token_logits(adapter, model, zeroed[:, :, None], g, final_norm).mean(-1)  # [A, L]
    clean_u, abl_u = clean_u.tolist(), abl_u.tolist()
    return {int(k): [math.nan] * k + [clean_u[l] - abl_u[l - k][l] for l in range(k, L)] for k in ks}


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
        positions: where McGrath's ablation applies: the last position (McGrath et al.) or every position.
        batch_size: sequences per forward pass, the memory knob. At the last position (and for the paper's Δ),
            windows per chunk: their clean prefixes run as one batch and McGrath's L + 1 ablation rows (and the
            paper's clean read-out) as L + 2 positions of one step over that single KV cache, so peak memory
            grows like a bare forward of ``batch_size`` windows (the KV cache of ``batch_size × T`` tokens).
            ``positions="all"``: a sequence is one window under one ablation (``batch_size // L`` windows a
            chunk); ``headwise`` at the last position: windows per chunk too, their L·H + 1 rows positions of
            steps over the chunk's KV cache; ``headwise`` at every position: one window under one head
            ablation (``hydra.headwise``).
        seed: seed of the random-token stimulus.
        headwise: also run McGrath et al.'s ablations head by head (``hydra.headwise``: direct, total and
            compensation per layer × head, same inputs, ``ablation`` and ``positions``); L·H + 1 rows per input.
        stimulus: "window" = held-out windows as given; "query" = each window cropped to end with the
            corpus's ``cue`` token and the ``query`` token after it (``probes.query_stimuli``; roles from the
            corpus vocabulary), so McGrath's ablations predict a query token and the paper Δ reads g = it.
        random_ids: ids of the random-token stimulus: "full" = [0, V), "research" = [100, V − 100) as the
            research code's OLMo evaluator draws them (docs/research.md#stimuli).
        vocab: V of the random-token stimulus: "model" = the lm_head rows, "tokenizer" = the vocabulary of the
            tokenizer saved beside the checkpoint, as the research code (differs when an embedding is padded).
    """

    name = "hydra"

    def __init__(self, ks: Sequence[int] = (1, 2), final_norm: bool = False, n_heldout: int = 100,
                 n_random: int = 10, random_len: int = 2048, mcgrath: bool = True,
                 ablation: Literal["zero", "mean"] = "zero", positions: Positions = "last", batch_size: int = 16,
                 seed: int = 0, headwise: bool = False, stimulus: Literal["window", "query"] = "window",
                 random_ids: RandomIds = "full", vocab: VocabSource = "model") -> None:
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
            raise ProbeError(f"HydraProbe.ks: must be a non-empty list of integers >= 1, got {ks!r}")
        for field, value, low in (("n_heldout", n_heldout, 1), ("n_random", n_random, 1),
                                  ("random_len", random_len, 2), ("batch_size", batch_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ProbeError(f"HydraProbe.{field}: must be an integer >= {low}, got {value!r}")
        if ablation not in ("zero", "mean"):
            raise ProbeError(f"HydraProbe.ablation: must be 'zero' or 'mean', got {ablation!r}")
        if positions not in ("last", "all"):
            raise ProbeError(f"HydraProbe.positions: must be 'last' or 'all', got {positions!r}")
        self.ks, self.final_norm, self.mcgrath, self.ablation = tuple(sorted(set(ks))), final_norm, mcgrath, ablation
        self.n_heldout, self.n_random, self.random_len = n_heldout, n_random, random_len
        self.positions, self.batch_size, self.seed = positions, batch_size, seed
        if not isinstance(headwise, bool):
            raise ProbeError(f"HydraProbe.headwise: must be true or false, got {headwise!r}")
        self.headwise = headwise
        if stimulus not in ("window", "query"):
            raise ProbeError(f"HydraProbe.stimulus: must be 'window' or 'query', got {stimulus!r}")
        self.stimulus, self._roles = stimulus, None
        if random_ids not in ("full", "research") or vocab not in ("tokenizer", "model"):
            raise ProbeError(f"HydraProbe.random_ids/vocab: must be 'full'/'research' and 'tokenizer'/'model', "
                             f"got {random_ids!r} and {vocab!r}")
        self.random_ids, self.vocab = random_ids, vocab

    def required_roles(self) -> tuple[str, ...]:
        """``cue`` and ``query`` for the query-position stimulus."""
        return ("cue", "query") if self.stimulus == "query" else ()

    def bind(self, vocabulary: Vocabulary) -> None:
        """Keep the cue and query id ranges for ``stimulus="query"``.

        Args:
            vocabulary: the corpus vocabulary.
        """
        if self.stimulus == "query":
            self._roles = tuple(role_range("HydraProbe.stimulus", vocabulary, r) for r in ("cue", "query"))

    def validate(self, adapter: ModelAdapter) -> None:
        """Every k must leave at least one layer l ≥ k.

        Args:
            adapter: the model's adapter.
        """
        if max(self.ks) >= adapter.n_layers:
            raise ProbeError(f"HydraProbe.ks: k={max(self.ks)} needs more than k layers; the model has "
                             f"{adapter.n_layers} (use k <= {adapter.n_layers - 1})")

    def inputs(self, model: nn.Module, heldout: Tensor | None) -> Tensor:
        """The stimulus ``[N, T]``: held-out windows, or seeded uniform random tokens (context-clipped; ids in
        [0, V) or, ``random_ids="research"``, [100, V − 100), V per ``vocab``: docs/research.md#stimuli).

        Args:
            model: HF causal LM.
            heldout: held-out windows ``[n, T]`` or None.
        """
        adapter = ModelAdapter.from_model(model)
        context = adapter.max_positions or self.random_len
        if heldout is None:
            shape = (self.n_random, min(self.random_len, context))
            bound = vocab_bound(model, adapter.vocab_size, self.vocab)
            return random_tokens(shape, random_id_range(bound, self.random_ids, "HydraProbe.random_ids"), self.generator())
        if heldout.ndim != 2 or heldout.shape[1] < 3:
            raise ProbeError(f"HydraProbe: heldout windows must be [n, T >= 3], got shape {tuple(heldout.shape)}")
        if heldout.numel() and (int(heldout.min()) < 0 or int(heldout.max()) >= adapter.vocab_size):
            raise ProbeError(f"HydraProbe: heldout token ids must lie in [0, {adapter.vocab_size})")
        if self.stimulus == "query":
            if self._roles is None:
                role_range("HydraProbe.stimulus", None, "cue")  # raises: not bound to a corpus
            return query_crop(heldout[: self.n_heldout, :context], *self._roles, where="HydraProbe")
        return heldout[: self.n_heldout, :context].long()

    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict:
        """The ``hydra`` fragment of the probe JSON (``paper`` and, if enabled, ``mcgrath``).

        Args:
            model: HF causal LM.
            heldout: held-out windows ``[n, T]``; None = random tokens.
        """
        self.validate(ModelAdapter.from_model(model))
        x = self.inputs(model, heldout)
        mcgrath = None
        # McGrath (layer- and headwise): held-out windows predict their last token; random tokens the clean argmax
        inp, y = (x[:, :-1], x[:, -1]) if heldout is not None else (x, None)
        if self.mcgrath:
            # the clean prefix of the last-position ablations also yields the paper's clean read-outs at x's end
            follow = x[:, -1] if heldout is not None and self.positions == "last" else None
            mcgrath = hydra_mcgrath(model, inp, y, self.ablation, self.batch_size, self.positions, follow)
        clean = None if mcgrath is None else mcgrath.pop("layers", None)
        deltas = hydra_paper(model, x, self.ks, self.final_norm, self.batch_size, clean)
        out: dict[str, Any] = {"paper": {f"k{k}": {str(l): d for l, d in enumerate(deltas[k]) if l >= k}
                                         for k in self.ks}}
        out["paper"]["final_norm"] = self.final_norm
        if mcgrath is not None:
            out["mcgrath"] = mcgrath
        if self.headwise:
            out["headwise"] = hydra_headwise(model, inp, y, self.ablation, self.batch_size, self.positions)
        return out

    def scalars(self, result: dict) -> dict[str, float]:
        """``hydra/paper_k<k>/layer<l>``, ``hydra/mcgrath/compensation/layer<l>`` and, headwise, the largest
        head compensation of each layer ``hydra/headwise/max_compensation/layer<l>``.

        Args:
            result: the output of ``run``.
        """
        out = {f"hydra/paper_{k}/layer{l}": v for k, per in result["paper"].items() if k.startswith("k")
               for l, v in per.items()}
        for l, v in enumerate(result.get("mcgrath", {}).get("compensation", [])):
            out[f"hydra/mcgrath/compensation/layer{l}"] = v
        for l, per_head in enumerate(result.get("headwise", {}).get("compensation", [])):
            out[f"hydra/headwise/max_compensation/layer{l}"] = max(per_head)
        return out

    def heatmaps(self, result: dict) -> dict[str, list]:
        """McGrath's ablated-layer × reading-layer matrix and the headwise layer × head compensation.

        Args:
            result: the output of ``run``.
        """
        maps = {"hydra_mcgrath_matrix": result["mcgrath"]["matrix"]} if "mcgrath" in result else {}
        if "headwise" in result:
            maps["hydra_headwise_compensation"] = result["headwise"]["compensation"]
        return maps

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
