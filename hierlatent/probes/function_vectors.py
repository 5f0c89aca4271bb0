"""Function-vector probes (docs/research.md#function-vectors): the paper's attention-output patching and Todd et al. (2024) FVs.

Paper protocol (the authors' later code): a source prompt ``[s1 v1 o1 C s1 v1]`` (answer o1) and a
target prompt ``[s2 v2 o2 C s2 v2]`` (answer o2). Cache every attention layer's output at the last
position of the source run; at layer l add it to the target run's attention output at the last position;
improvement_l = patched logit(o2) − clean logit(o2), averaged over pairs. The patch touches only the last
position, so every patched run shares the clean target's prefix: it runs once with a KV cache, and the clean
read-out and the L patches of a prompt are L + 1 positions of one step over it (``kvstep``: a mask keeps each
to the prefix and its own key), a hook adding the cached vector only at its own position's layer (one step
instead of L + 1 full prompts per pair, and no copy of the cache per patch).

Todd et al.'s causal indirect effect and mean-head function vector are in ``function_vectors_todd.py``
(re-exported here, so ``hierlatent.probes.function_vectors`` names every FV function); ``FunctionVectorProbe``
runs both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.probes.base import Probe, ReadsRoles, id_range
from hierlatent.probes.function_vectors_todd import fv_todd, head_output, icl_prompts, out_proj  # noqa: F401  (re-exported)
from hierlatent.probes.intervene import chunks, hooks, model_device, output_tensor, sdpa_probe_mode, with_output
from hierlatent.probes.kvstep import prefill, shared_step


def paper_prompts(pairs: Tensor, connector: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source/target prompts ``[P, 6]`` and golds ``[P]`` from ``pairs`` rows ``[s1 v1 o1 s2 v2 o2]``.

    Args:
        pairs: ``[P, 6]`` token ids.
        connector: the connector token C.
    """
    c = torch.full_like(pairs[:, :1], connector)
    src = torch.cat([pairs[:, 0:3], c, pairs[:, 0:2]], 1)
    tgt = torch.cat([pairs[:, 3:6], c, pairs[:, 3:5]], 1)
    return src, pairs[:, 2], tgt, pairs[:, 5]


def _attn_last(model: nn.Module, adapter: ModelAdapter, ids: Tensor, batch_size: int = 64) -> Tensor:
    """Every attention layer's output at the last position ``[R, L, d]``."""
    L, attn = adapter.n_layers, []
    for sl in chunks(ids.shape[0], batch_size):
        got: list[Tensor | None] = [None] * L

        def make(l: int):
            def fn(module, args, output):
                got[l] = output_tensor(output)[:, -1]
            return fn

        with hooks(*[(adapter.attention(l), "forward", make(l)) for l in range(L)]):
            model(input_ids=ids[sl], use_cache=False, logits_to_keep=1)
        attn.append(torch.stack(got, 1))
    return torch.cat(attn)


def fv_paper(model: nn.Module, pairs: Tensor, connector: int = 950, batch_size: int = 64) -> list[float]:
    """The paper's improvement_l (one float per layer), averaged over the pairs.

    Args:
        model: HF causal LM.
        pairs: ``[P, 6]`` rows ``[s1 v1 o1 s2 v2 o2]``.
        connector: the connector token C.
        batch_size: rows per forward pass.
    """
    return fv_paper_pairs(model, pairs, connector, batch_size).mean(1).tolist()


def fv_paper_pairs(model: nn.Module, pairs: Tensor, connector: int = 950, batch_size: int = 64) -> Tensor:
    """The paper's per-pair improvement ``[L, P]`` (float64): patched − clean logit(gold) of each pair.

    Args:
        model: HF causal LM.
        pairs: ``[P, 6]`` rows ``[s1 v1 o1 s2 v2 o2]``.
        connector: the connector token C.
        batch_size: prompts per forward pass (the patch step runs L + 1 positions per prompt).
    """
    adapter = ModelAdapter.from_model(model)
    src, _, tgt, gold = (t.to(model_device(model)) for t in paper_prompts(pairs, connector))
    P = src.shape[0]
    with sdpa_probe_mode(model):
        vectors = _attn_last(model, adapter, src, batch_size)  # [P, L, d]
        # batch_size prompts per step (L + 1 positions each): at 6-token prompts a pass costs mostly its
        # read of every weight, so few wide passes beat many narrow ones
        logit = torch.cat([_patched_step(model, adapter, tgt[sl], gold[sl], vectors[sl])
                           for sl in chunks(P, batch_size)])  # [P, 1 + L]
        return (logit[:, 1:] - logit[:, :1]).double().T


def _patched_step(model: nn.Module, adapter: ModelAdapter, tgt: Tensor, gold: Tensor, vectors: Tensor) -> Tensor:
    """logit(gold) ``[B, 1 + L]`` of B target prompts: clean (column 0) and with ``vectors[:, l]`` added to
    attention layer l's output at the last position (column 1 + l), as R = L + 1 positions of one step after the
    cached prefix (``kvstep.shared_step``)."""
    B, R = tgt.shape[0], adapter.n_layers + 1
    cache = prefill(model, tgt[:, :-1])

    def make(l: int):
        def fn(module, args, output):
            a = output_tensor(output).clone()  # [B, R, d]: position r is variant r (0 = clean, 1 + l = patch l)
            a[:, l + 1] += vectors[:, l].to(a.dtype)
            return with_output(output, a)
        return fn

    with hooks(*[(adapter.attention(l), "forward", make(l)) for l in range(R - 1)]):
        logits = shared_step(model, cache, tgt[:, -1:].expand(B, R))  # [B, R, V]
    return logits.gather(-1, gold[:, None, None].expand(B, R, 1))[..., 0]


# -- the Probe -----------------------------------------------------------------------------------------
class FunctionVectorProbe(ReadsRoles, Probe):
    """Function vectors on a PCFG vocabulary: the paper's per-layer improvement and Todd et al.'s FV.

    The id arguments default to the corpus's roles (bound at start-up, ``ReadsRoles``); an explicit value
    must lie inside its role, and a corpus without the roles the probe reads (n-gram) refuses it.

    Args:
        n_pairs: source/target prompt pairs of the paper protocol (ignored when ``prompts`` is given).
        seed: seed of the prompt sampler (the paper: 42).
        connector: the connector token C of the prompts; None = the first id of the ``connectors`` role.
        subject_range: half-open id range of subjects; None = the ``subjects`` role.
        verb_range: half-open id range of verbs; None = the ``verbs`` role.
        object_range: half-open id range of objects; None = the ``objects`` role.
        prompts: explicit pairs, each ``[s1, v1, o1, s2, v2, o2]`` (source [s1 v1 o1 C s1 v1] -> o1, target
            [s2 v2 o2 C s2 v2] -> o2); None = ``n_pairs`` sampled ones.
        todd: also run Todd et al.'s head ranking and function-vector accuracy.
        n_top_heads: heads summed into Todd's function vector.
        fv_layer: decoder layer receiving Todd's vector (None = n_layers // 3).
        n_shots: demonstrations per Todd prompt.
        n_icl_prompts: Todd prompts (clean, corrupted and zero-shot each).
        batch_size: sequences per forward pass.
    """

    name = "function_vectors"
    #: the corpus role each id argument reads when it is left None
    role_args = {"subject_range": "subjects", "verb_range": "verbs", "object_range": "objects",
                 "connector": "connectors"}

    def __init__(self, n_pairs: int = 16, seed: int = 42, connector: int | None = None,
                 subject_range: tuple[int, int] | None = None, verb_range: tuple[int, int] | None = None,
                 object_range: tuple[int, int] | None = None, prompts: list[list[int]] | None = None,
                 todd: bool = True, n_top_heads: int = 10, fv_layer: int | None = None, n_shots: int = 5,
                 n_icl_prompts: int = 16, batch_size: int = 64) -> None:
        for field, value, low in (("n_pairs", n_pairs, 1), ("seed", seed, 0), ("n_top_heads", n_top_heads, 1),
                                  ("n_shots", n_shots, 2), ("n_icl_prompts", n_icl_prompts, 1),
                                  ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ProbeError(f"FunctionVectorProbe.{field}: must be an integer >= {low}, got {value!r}")
        for field, value in (("fv_layer", fv_layer), ("connector", connector)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ProbeError(f"FunctionVectorProbe.{field}: must be an integer >= 0 or None, got {value!r}")
        self._given = {f: id_range(f"FunctionVectorProbe.{f}", v) for f, v in
                       (("subject_range", subject_range), ("verb_range", verb_range), ("object_range", object_range))}
        self._given["connector"] = None if connector is None else (connector, connector + 1)
        self._ranges: dict[str, tuple[int, int]] | None = None
        if prompts is not None:
            ok = len(prompts) > 0 and all(isinstance(p, (list, tuple)) and len(p) == 6 and all(
                not isinstance(t, bool) and isinstance(t, int) and t >= 0 for t in p) for p in prompts)
            if not ok:
                raise ProbeError("FunctionVectorProbe.prompts: must be a non-empty list of [s1, v1, o1, s2, v2, o2] "
                                 "lists of non-negative token ids")
        self.n_pairs, self.seed, self.prompts = n_pairs, seed, prompts
        self.todd, self.n_top_heads, self.fv_layer, self.n_shots = todd, n_top_heads, fv_layer, n_shots
        self.n_icl_prompts, self.batch_size = n_icl_prompts, batch_size

    @property
    def connector(self) -> int:
        """The connector token C (the first id of the bound range)."""
        return self.ranges["connector"][0]

    subject_range = property(lambda self: self.ranges["subject_range"], doc="Bound subject ids [lo, hi).")
    verb_range = property(lambda self: self.ranges["verb_range"], doc="Bound verb ids [lo, hi).")
    object_range = property(lambda self: self.ranges["object_range"], doc="Bound object ids [lo, hi).")

    def validate(self, adapter: ModelAdapter) -> None:
        """Every token id inside the vocabulary, ``fv_layer`` a layer, Todd prompts inside the context.

        Args:
            adapter: the model's adapter.
        """
        V = adapter.vocab_size
        for field in ("subject_range", "verb_range", "object_range"):
            if self.ranges[field][1] > V:
                raise ProbeError(f"FunctionVectorProbe.{field}: {self.ranges[field]} exceeds the vocabulary ({V})")
        if self.connector >= V:
            raise ProbeError(f"FunctionVectorProbe.connector: id {self.connector} is outside the vocabulary ({V})")
        if self.prompts is not None and max(max(p) for p in self.prompts) >= V:
            raise ProbeError(f"FunctionVectorProbe.prompts: id {max(max(p) for p in self.prompts)} is outside the "
                             f"vocabulary ({V})")
        if self.fv_layer is not None and self.fv_layer >= adapter.n_layers:
            raise ProbeError(f"FunctionVectorProbe.fv_layer: {self.fv_layer} >= the model's {adapter.n_layers} layers")
        if adapter.max_positions and self.todd and 4 * self.n_shots + 2 > adapter.max_positions:
            raise ProbeError(f"FunctionVectorProbe.n_shots: {self.n_shots} demonstrations need "
                             f"{4 * self.n_shots + 2} positions; the model has {adapter.max_positions}")

    def pairs(self) -> Tensor:
        """The paper's prompt pairs ``[P, 6]`` (explicit ``prompts`` or ``n_pairs`` seeded samples)."""
        if self.prompts is not None:
            return torch.tensor(self.prompts, dtype=torch.long)
        gen = self.generator()
        ranges = [self.subject_range, self.verb_range, self.object_range] * 2
        return torch.stack([torch.randint(lo, hi, (self.n_pairs,), generator=gen) for lo, hi in ranges], 1)

    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict:
        """The ``function_vectors`` fragment of the probe JSON.

        Args:
            model: HF causal LM.
            heldout: unused (the prompts are synthetic); accepted for the runner's uniform call.
        """
        self.validate(ModelAdapter.from_model(model))
        diffs = fv_paper_pairs(model, self.pairs(), self.connector, self.batch_size)  # [L, P]
        out: dict[str, Any] = {"improvement": diffs.mean(1).tolist(), "n_pairs": diffs.shape[1],
                               "improvement_stderr": (diffs.std(1) / diffs.shape[1] ** 0.5).tolist()
                               if diffs.shape[1] > 1 else None}
        if self.todd:
            prompts = icl_prompts(self.n_icl_prompts, self.n_shots, self.subject_range, self.verb_range,
                                  self.object_range, self.connector, self.seed)
            out["todd"] = fv_todd(model, prompts, self.n_top_heads, self.fv_layer, self.batch_size)
        return out

    def scalars(self, result: dict) -> dict[str, float]:
        """``function_vectors/improvement/layer<l>`` and Todd's accuracies and gain.

        Args:
            result: the output of ``run``.
        """
        out = {f"function_vectors/improvement/layer{l}": v for l, v in enumerate(result["improvement"])}
        for key in ("zero_shot_accuracy", "fv_accuracy", "gain"):
            if "todd" in result:
                out[f"function_vectors/todd/{key}"] = result["todd"][key]
        return out

    def heatmaps(self, result: dict) -> dict[str, list]:
        """Todd's causal indirect effect, layer × head.

        Args:
            result: the output of ``run``.
        """
        return {"function_vectors_todd_cie": result["todd"]["cie"]} if "todd" in result else {}

    def step_columns(self, result: dict) -> dict[str, list]:
        """The improvement per layer: Fig. 5(a)'s layer × step heatmap.

        Args:
            result: the output of ``run``.
        """
        return {"function_vectors_improvement": list(result["improvement"])}
