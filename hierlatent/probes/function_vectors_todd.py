"""Todd et al. (2024) function vectors on the PCFG vocabulary (docs/research.md#function-vectors).

ICL task (ours, since the PCFG has none): the object with the subject's index,
f(s) = object_lo + (s − subject_lo) mod n_objects. A prompt is ``n_shots`` demonstrations ``s v f(s) C`` and a
query ``s v`` whose answer is f(s) (subjects, verbs and connectors drawn uniformly from their ranges).
Corrupted prompts cyclically shift the demonstrations' answers (every demonstration gets another one's
answer; the query and its gold stay). A head's causal indirect effect (CIE) = mean over corrupted prompts of
P(gold | head's pre-``o_proj`` activation at the last position replaced by its mean over clean prompts) −
P(gold | corrupted). The function vector is the sum over the ``n_top_heads`` highest-CIE heads of their mean
outputs (mean activation slice through that head's ``o_proj`` columns, without the bias); it is added to the
residual stream (decoder layer ``fv_layer``'s output) at the last position of zero-shot prompts ``s v``.
Accuracy = top-1 over the whole vocabulary equals f(s).

The paper's own attention-output patching and ``FunctionVectorProbe`` live in ``function_vectors.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter
from hierlatent.probes.intervene import chunks, hooks, model_device, output_tensor, sdpa_probe_mode, with_output


def out_proj(attention: nn.Module) -> nn.Module:
    """The attention module's output projection (Llama/OLMo ``o_proj``, GPT-2 ``c_proj``, NeoX ``dense``)."""
    for name in ("o_proj", "c_proj", "dense", "out_proj"):
        if isinstance(getattr(attention, name, None), nn.Module):
            return getattr(attention, name)
    raise ProbeError(f"FunctionVectorProbe: cannot find the output projection of {type(attention).__name__}")


def icl_prompts(n: int, n_shots: int, subject_range: tuple[int, int], verb_range: tuple[int, int],
                object_range: tuple[int, int], connector: int, seed: int) -> dict[str, Tensor]:
    """Clean and corrupted few-shot prompts ``[n, 4·n_shots + 2]``, zero-shot prompts ``[n, 2]``, golds.

    Args:
        n: number of prompts.
        n_shots: demonstrations per prompt (≥ 2 so that shifting answers corrupts them).
        subject_range: half-open id range of subjects.
        verb_range: half-open id range of verbs.
        object_range: half-open id range of objects.
        connector: the connector token closing each demonstration.
        seed: seed of the prompt sampler.
    """
    gen = torch.Generator().manual_seed(seed)
    s = torch.randint(*subject_range, (n, n_shots + 1), generator=gen)
    v = torch.randint(*verb_range, (n, n_shots + 1), generator=gen)
    o = object_range[0] + (s - subject_range[0]) % (object_range[1] - object_range[0])
    c = torch.full((n, n_shots), connector)

    def build(answers: Tensor) -> Tensor:
        demos = torch.stack([s[:, :-1], v[:, :-1], answers, c], -1).view(n, 4 * n_shots)  # [n, shots, 4] -> flat
        return torch.cat([demos, s[:, -1:], v[:, -1:]], 1)

    return {"clean": build(o[:, :-1]), "corrupted": build(o[:, :-1].roll(-1, dims=1)),
            "zero_shot": torch.stack([s[:, -1], v[:, -1]], 1), "gold": o[:, -1]}


def _run(model: nn.Module, adapter: ModelAdapter, ids: Tensor, gold: Tensor, batch_size: int,
         patch: tuple[Tensor, Tensor, Tensor] | None = None,
         add: tuple[int, Tensor] | None = None) -> dict[str, Tensor]:
    """Last-position pre-``o_proj`` activations ``z`` [R, L, HD], P(gold) [R] and top-1 [R].

    ``patch = (row_layer [R], row_head [R], mean_z [L, HD])`` sets row r's head ``row_head[r]`` of layer
    ``row_layer[r]`` to its mean activation at the last position; ``add = (layer, vector [d])`` adds a
    vector to that decoder layer's output at the last position of every row.
    """
    L, H = adapter.n_layers, adapter.n_heads
    zs, probs, top = [], [], []
    for sl in chunks(ids.shape[0], batch_size):
        got: list[Tensor | None] = [None] * L

        def make(l: int):
            def fn(module, args):
                z = args[0]
                if patch is not None and bool((patch[0][sl] == l).any()):  # row tensors live on the host
                    rows = (patch[0][sl] == l).nonzero()[:, 0]
                    dh = z.shape[-1] // H
                    cols = patch[1][sl][rows, None] * dh + torch.arange(dh)  # [r, dh]
                    rows, cols = rows.to(z.device), cols.to(z.device)
                    z = z.clone()
                    z[rows[:, None], -1, cols] = patch[2][l][cols].to(z.dtype)
                got[l] = z[:, -1]
                return (z, *args[1:])
            return fn

        regs = [(out_proj(adapter.attention(l)), "pre", make(l)) for l in range(L)]
        if add is not None:
            def plus(module, args, output):
                h = output_tensor(output).clone()
                h[:, -1] += add[1].to(h.dtype)
                return with_output(output, h)
            regs.append((adapter.layers[add[0]], "forward", plus))
        with hooks(*regs):
            logits = model(input_ids=ids[sl], use_cache=False, logits_to_keep=1).logits[:, -1].double()
        probs.append(logits.softmax(-1).gather(-1, gold[sl, None])[:, 0])
        top.append(logits.argmax(-1))
        zs.append(torch.stack(got, 1))
    return {"z": torch.cat(zs), "p": torch.cat(probs), "top": torch.cat(top)}


def head_output(adapter: ModelAdapter, layer: int, head: int, z: Tensor) -> Tensor:
    """Head ``head``'s output [d]: its slice of the pre-``o_proj`` activation ``z`` [HD] through ``o_proj``.

    Args:
        adapter: the model's adapter.
        layer: layer index.
        head: head index.
        z: pre-``o_proj`` activation of all heads ``[HD]``.
    """
    proj, dh = out_proj(adapter.attention(layer)), z.shape[-1] // adapter.n_heads
    only = torch.zeros_like(z)
    only[head * dh:(head + 1) * dh] = z[head * dh:(head + 1) * dh]
    both = proj(torch.stack([only, torch.zeros_like(z)])[None])[0]  # [1, 2, HD] -> [2, d]
    return both[0] - both[1]  # the bias cancels


def fv_todd(model: nn.Module, prompts: dict[str, Tensor], n_top_heads: int = 10, fv_layer: int | None = None,
            batch_size: int = 64) -> dict[str, Any]:
    """Todd et al.'s CIE per head, top heads, function vector and zero-shot accuracy gain.

    Args:
        model: HF causal LM.
        prompts: the output of ``icl_prompts``.
        n_top_heads: heads summed into the function vector.
        fv_layer: decoder layer whose output receives the vector (None = n_layers // 3).
        batch_size: rows per forward pass.
    """
    adapter = ModelAdapter.from_model(model)
    L, H = adapter.n_layers, adapter.n_heads
    fv_layer = L // 3 if fv_layer is None else fv_layer
    dev = model_device(model)
    p = {k: v.to(dev) for k, v in prompts.items()}
    n = p["gold"].shape[0]
    with sdpa_probe_mode(model):
        mean_z = _run(model, adapter, p["clean"], p["gold"], batch_size)["z"].mean(0)  # [L, HD]
        base = _run(model, adapter, p["corrupted"], p["gold"], batch_size)["p"]  # [n]
        row_layer = torch.arange(L).repeat_interleave(H * n)  # rows (l, h, prompt), on the host
        row_head = torch.arange(H).repeat_interleave(n).repeat(L)
        patched = _run(model, adapter, p["corrupted"].repeat(L * H, 1), p["gold"].repeat(L * H), batch_size,
                       patch=(row_layer, row_head, mean_z))["p"]
        cie = (patched.view(L, H, n) - base[None, None]).mean(-1)  # [L, H]
        order = cie.flatten().argsort(descending=True, stable=True)[: min(n_top_heads, L * H)].tolist()
        top = [(i // H, i % H) for i in order]
        fv = sum(head_output(adapter, l, h, mean_z[l]) for l, h in top)
        zero = _run(model, adapter, p["zero_shot"], p["gold"], batch_size)["top"]
        with_fv = _run(model, adapter, p["zero_shot"], p["gold"], batch_size, add=(fv_layer, fv))["top"]
        zs_acc = (zero == p["gold"]).double().mean().item()
        fv_acc = (with_fv == p["gold"]).double().mean().item()
    return {"top_heads": [list(t) for t in top], "cie": cie.tolist(), "zero_shot_accuracy": zs_acc,
            "fv_accuracy": fv_acc, "gain": fv_acc - zs_acc, "layer": fv_layer}
