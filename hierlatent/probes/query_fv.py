"""A function-vector measure for the toy hierarchy (docs/research.md#theory): does one layer's cue-position attention carry
the query prediction from one context into another?

The PCFG function vector (``function_vectors``) patches an attention output between two prompts of one
task. The toy has no task prompts; its analogue of "what to output here" is the query-token distribution
at a ``[QUERY]`` cue, which depends on the context's latents (Z0 across segments, Z1 within). So, on pairs
of held-out windows cropped to end at a cue (``query_stimuli.query_crop``, roles from the corpus):

* source s and target t are different windows (window i and window i + P): different sequences, whose Z0
  differs with probability 1 − 1/K0 (the probe needs no latents);
* p_s, p_t = the clean next-token distributions at the cue, restricted to the ``query`` role and
  renormalised; p̃_l = the target's distribution when attention layer l's output *at the cue position* is
  replaced by the source's (every other position and layer as in the clean target run);
* shift_l = mean over pairs of KL(p_s ‖ p_t) − KL(p_s ‖ p̃_l)   (nats: how much closer to the source);
* transfer_l = shift_l / mean KL(p_s ‖ p_t)   (1: the patched target predicts exactly as the source).

Known answers (tests): in a one-layer model the cue position's residual is embed(cue) + attention output
+ MLP of that sum, so replacing the attention output reproduces the source's state: transfer_0 = 1.
Source = target gives shift 0. Replacement, unlike the PCFG protocol's addition, makes both exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.corpora.base import Vocabulary
from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.probes.base import Probe, role_range
from hierlatent.probes.intervene import chunks, hooks, model_device, output_tensor, sdpa_probe_mode, with_output
from hierlatent.probes.query_stimuli import query_crop


def _cue_run(model: nn.Module, adapter: ModelAdapter, ids: Tensor, row_layer: Tensor | None = None,
             repl: Tensor | None = None, batch_size: int = 32) -> tuple[Tensor, Tensor]:
    """Attention outputs at the last position ``[R, L, d]`` and last-position logits ``[R, V]``.

    Row r replaces attention layer ``row_layer[r]``'s output at the last position by ``repl[r]`` [d].
    """
    L, attn, logits = adapter.n_layers, [], []
    for sl in chunks(ids.shape[0], batch_size):
        got: list[Tensor | None] = [None] * L
        rows = None if row_layer is None else row_layer[sl].cpu()

        def make(l: int):
            def fn(module, args, output):
                a = output_tensor(output)
                if rows is not None and bool((rows == l).any()):
                    a = a.clone()
                    mask = (rows == l).to(a.device)[:, None]
                    a[:, -1] = torch.where(mask, repl[sl].to(a.dtype), a[:, -1])
                    output = with_output(output, a)
                got[l] = a[:, -1]
                return output
            return fn

        with hooks(*[(adapter.attention(l), "forward", make(l)) for l in range(L)]):
            logits.append(model(input_ids=ids[sl], use_cache=False, logits_to_keep=1).logits[:, -1])
        attn.append(torch.stack(got, 1))
    return torch.cat(attn), torch.cat(logits)


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def query_transfer(model: nn.Module, source: Tensor, target: Tensor, query: tuple[int, int],
                   batch_size: int = 32) -> dict[str, Any]:
    """Per attention layer, the shift of the target's query distribution toward the source's (module docstring).

    Args:
        model: HF causal LM.
        source: source inputs ``[P, T]`` ending at a cue.
        target: target inputs ``[P, T]`` ending at a cue.
        query: half-open id range of the query tokens.
        batch_size: rows per forward pass.

    Returns:
        ``{"shift": [L], "transfer": [L], "kl_clean": float}`` (float64 tensors / floats).
    """
    adapter = ModelAdapter.from_model(model)
    L, P = adapter.n_layers, source.shape[0]
    dev = model_device(model)
    source, target = source.to(dev), target.to(dev)
    with sdpa_probe_mode(model):
        cache, src_logits = _cue_run(model, adapter, source, batch_size=batch_size)  # [P, L, d], [P, V]
        _, tgt_logits = _cue_run(model, adapter, target, batch_size=batch_size)
        row_layer = torch.arange(L).repeat_interleave(P)  # rows (l, p), l-major
        repl = cache.transpose(0, 1).reshape(L * P, -1)
        _, patched = _cue_run(model, adapter, target.repeat(L, 1), row_layer, repl, batch_size)
    q = slice(*query)
    log_s, log_t = (x[:, q].double().log_softmax(-1) for x in (src_logits, tgt_logits))
    log_p = patched[:, q].double().log_softmax(-1).view(L, P, -1)
    kl_clean = _kl(log_s, log_t)  # [P]
    shift = (kl_clean[None] - _kl(log_s[None], log_p)).mean(1)  # [L]
    return {"shift": shift, "transfer": shift / kl_clean.mean(), "kl_clean": float(kl_clean.mean())}


class QueryFunctionVectorProbe(Probe):
    """Toy function-vector measure: transfer of the query prediction by one layer's cue-position attention.

    Args:
        n_pairs: source/target pairs (needs 2 × n_pairs held-out windows from the runner).
        batch_size: sequences per forward pass.
        seed: unused (pairs are the runner's held-out windows, in order); kept for a uniform config.
    """

    name = "query_fv"
    needs_heldout = True

    def __init__(self, n_pairs: int = 32, batch_size: int = 32, seed: int = 0) -> None:
        for field, value in (("n_pairs", n_pairs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ProbeError(f"QueryFunctionVectorProbe.{field}: must be an integer >= 1, got {value!r}")
        self.n_pairs, self.batch_size, self.seed = n_pairs, batch_size, seed
        self._roles: tuple[tuple[int, int], tuple[int, int]] | None = None

    def required_roles(self) -> tuple[str, ...]:
        """The cue position and the query tokens."""
        return ("cue", "query")

    def bind(self, vocabulary: Vocabulary) -> None:
        """Keep the cue and query id ranges.

        Args:
            vocabulary: the corpus vocabulary.
        """
        self._roles = tuple(role_range("QueryFunctionVectorProbe", vocabulary, r) for r in ("cue", "query"))

    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict[str, Any]:
        """The ``query_fv`` fragment: ``{"shift": [L], "transfer": [L], "kl_clean", "n_pairs"}``.

        Args:
            model: HF causal LM.
            heldout: held-out windows ``[n >= 2 n_pairs, T]`` (required).
        """
        if self._roles is None:
            role_range("QueryFunctionVectorProbe", None, "cue")  # raises: not bound to a corpus
        if heldout is None or heldout.ndim != 2 or heldout.shape[0] < 2 * self.n_pairs:
            got = None if heldout is None else tuple(heldout.shape)
            raise ProbeError(f"QueryFunctionVectorProbe.n_pairs: needs 2 x {self.n_pairs} held-out windows, got {got}")
        context = ModelAdapter.from_model(model).max_positions or heldout.shape[1]
        x = query_crop(heldout[: 2 * self.n_pairs, : context + 1], *self._roles, where="QueryFunctionVectorProbe")
        inp = x[:, :-1]  # ends at the cue
        out = query_transfer(model, inp[: self.n_pairs], inp[self.n_pairs:], self._roles[1], self.batch_size)
        return {**out, "n_pairs": self.n_pairs}

    def scalars(self, result: dict[str, Any]) -> dict[str, float]:
        """``query_fv/transfer/layer<l>``, ``query_fv/transfer_max`` and ``query_fv/kl_clean``.

        Args:
            result: the output of ``run``.
        """
        transfer = [float(v) for v in result["transfer"]]
        out = {f"query_fv/transfer/layer{l}": v for l, v in enumerate(transfer)}
        out["query_fv/transfer_max"] = max(transfer)
        out["query_fv/kl_clean"] = float(result["kl_clean"])
        return out

    def step_columns(self, result: dict[str, Any]) -> dict[str, list[float]]:
        """The transfer per layer (layer × step heatmap).

        Args:
            result: the output of ``run``.
        """
        return {"query_fv_transfer": [float(v) for v in result["transfer"]]}
