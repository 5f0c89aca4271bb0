"""Slow, obviously-correct references for the Hydra and function-vector probes (test oracle + benchmark).

One sample and one ablation/patch at a time, full model forward passes, one hook doing one thing.
They share no code with ``hierlatent.probes.hydra``/``function_vectors`` beyond module lookup.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hierlatent.probes.adapter import ModelAdapter, probe_mode


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _put(output, new):
    return (new, *output[1:]) if isinstance(output, tuple) else new


def _forward(model: nn.Module, ids: Tensor, hooks: list) -> Tensor:
    """Full forward of one sequence ``[T]`` with ``hooks`` = [(module, kind, fn)]; returns logits [T, V]."""
    handles = [m.register_forward_hook(f) if k == "forward" else m.register_forward_pre_hook(f) for m, k, f in hooks]
    try:
        return model(input_ids=ids[None]).logits[0]
    finally:
        for h in handles:
            h.remove()


def _recorder(store: dict, key):
    def fn(module, args, output):
        store[key] = _first(output)[0, -1].clone()
    return fn


def _zeroer():
    return lambda module, args, output: _put(output, torch.zeros_like(_first(output)))


def ref_hydra_paper(model: nn.Module, inputs: Tensor, ks=(1, 2), final_norm: bool = False) -> dict[int, list]:
    """Δ_l^k by zeroing decoder layer l−k's output with a hook, per sample and per (k, l)."""
    ad = ModelAdapter.from_model(model)
    L, head = ad.n_layers, model.get_output_embeddings()
    U = (lambda h: head(ad.final_norm(h))) if final_norm else head
    out = {k: [math.nan] * L for k in ks}
    with probe_mode(model, eager=False), torch.no_grad():
        clean = {}
        for n, x in enumerate(inputs):  # one clean pass per sample records every layer
            _forward(model, x, [(ad.layers[l], "forward", _recorder(clean, (n, l))) for l in range(L)])
        for k in ks:
            for l in range(k, L):
                total = 0.0
                for n, x in enumerate(inputs):
                    abl = {}
                    _forward(model, x, [(ad.layers[l - k], "forward", _zeroer()),
                                        (ad.layers[l], "forward", _recorder(abl, 0))])
                    g = x[-1]
                    total += float(U(clean[n, l])[g] - U(abl[0])[g])
                out[k][l] = total / len(inputs)
    return out


def _frozen_read(ad: ModelAdapter, head: nn.Module, h_final: Tensor, c: Tensor, y: int) -> float:
    """Logit-y contribution of ``c`` through the final norm with the clean scale frozen (no biases)."""
    norm = ad.final_norm
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-5))
    if "rms" in type(norm).__name__.lower():
        scaled = c / torch.sqrt((h_final ** 2).mean() + eps)
    else:
        scaled = (c - c.mean()) / torch.sqrt(((h_final - h_final.mean()) ** 2).mean() + eps)
    if getattr(norm, "weight", None) is not None:
        scaled = scaled * norm.weight
    return float(head.weight[y] @ scaled)


def ref_hydra_mcgrath(model: nn.Module, inputs: Tensor, targets: Tensor | None = None,
                      ablation: str = "zero", positions: str = "last") -> dict:
    """McGrath direct/total/compensation/matrix, one sample and one ablated layer at a time (full forwards)."""
    ad = ModelAdapter.from_model(model)
    L, head = ad.n_layers, model.get_output_embeddings()
    where = slice(-1, None) if positions == "last" else slice(None)  # the ablated positions
    with probe_mode(model, eager=False), torch.no_grad():
        acc = {i: [] for i in range(L)}
        for x in inputs if ablation == "mean" else []:  # each attention layer's mean over the ablated positions
            _forward(model, x, [(ad.attention(i), "forward",
                                 lambda m, a, o, i=i: acc[i].append(_first(o)[0, where].clone())) for i in range(L)])
        direct, total, matrix = [0.0] * L, [0.0] * L, [[0.0] * L for _ in range(L)]
        for n, x in enumerate(inputs):
            clean = {}
            regs = [(ad.attention(j), "forward", _recorder(clean, j)) for j in range(L)]
            logits = _forward(model, x, regs + [(ad.layers[L - 1], "forward", _recorder(clean, "final"))])
            y = int(logits[-1].argmax()) if targets is None else int(targets[n])
            for i in range(L):
                abl = {}
                repl = 0.0 if ablation == "zero" else torch.cat(acc[i]).mean(0)

                def kill(m, a, o, r=repl):
                    h = _first(o).clone()
                    h[0, where] = r
                    return _put(o, h)

                regs = [(ad.attention(j), "forward", _recorder(abl, j)) for j in range(L)]
                logits_abl = _forward(model, x, [(ad.attention(i), "forward", kill)] + regs)
                total[i] += float(logits[-1, y] - logits_abl[-1, y]) / len(inputs)
                direct[i] += _frozen_read(ad, head, clean["final"], clean[i] - abl[i], y) / len(inputs)
                for j in range(L):
                    matrix[i][j] += _frozen_read(ad, head, clean["final"], abl[j] - clean[j], y) / len(inputs)
    return {"direct": direct, "total": total, "compensation": [d - t for d, t in zip(direct, total)],
            "matrix": matrix, "ablation": ablation, "positions": positions}


def ref_fv_paper(model: nn.Module, src: Tensor, tgt: Tensor, gold: Tensor) -> list[float]:
    """improvement_l, one pair and one layer at a time."""
    ad = ModelAdapter.from_model(model)
    L = ad.n_layers
    out = [0.0] * L
    with probe_mode(model, eager=False), torch.no_grad():
        for s, t, g in zip(src, tgt, gold):
            cache = {}
            _forward(model, s, [(ad.attention(l), "forward", _recorder(cache, l)) for l in range(L)])
            clean = _forward(model, t, [])[-1, g]
            for l in range(L):
                def add(m, a, o, v=cache[l]):
                    h = _first(o).clone()
                    h[0, -1] += v
                    return _put(o, h)
                patched = _forward(model, t, [(ad.attention(l), "forward", add)])[-1, g]
                out[l] += float(patched - clean) / len(src)
    return out


def _out_proj(attn: nn.Module) -> nn.Module:
    return next(getattr(attn, n) for n in ("o_proj", "c_proj", "dense", "out_proj") if hasattr(attn, n))


def ref_fv_todd(model: nn.Module, prompts: dict, n_top_heads: int, fv_layer: int | None = None) -> dict:
    """Todd et al. CIE per head (one head and one prompt at a time), top heads, FV and accuracies."""
    ad = ModelAdapter.from_model(model)
    L, H = ad.n_layers, ad.n_heads
    fv_layer = L // 3 if fv_layer is None else fv_layer
    with probe_mode(model, eager=False), torch.no_grad():
        acc = {l: [] for l in range(L)}
        for x in prompts["clean"]:  # mean pre-o_proj activation at the last position, per layer
            _forward(model, x, [(_out_proj(ad.attention(l)), "pre", lambda m, a, l=l: acc[l].append(a[0][0, -1].clone()))
                                for l in range(L)])
        mean_z = [torch.stack(acc[l]).mean(0) for l in range(L)]
        dh = mean_z[0].shape[0] // H
        cie = [[0.0] * H for _ in range(L)]
        for x, g in zip(prompts["corrupted"], prompts["gold"]):
            base = _forward(model, x, [])[-1].double().softmax(-1)[g]
            for l in range(L):
                for h in range(H):
                    def patch(m, a, l=l, h=h):
                        z = a[0].clone()
                        z[0, -1, h * dh:(h + 1) * dh] = mean_z[l][h * dh:(h + 1) * dh]
                        return (z,)
                    p = _forward(model, x, [(_out_proj(ad.attention(l)), "pre", patch)])[-1].double().softmax(-1)[g]
                    cie[l][h] += float(p - base) / len(prompts["gold"])
        flat = sorted(((cie[l][h], -(l * H + h), l, h) for l in range(L) for h in range(H)), reverse=True)
        top = [[l, h] for _, _, l, h in flat[:n_top_heads]]
        fv = 0
        for l, h in top:
            proj = _out_proj(ad.attention(l))
            z = torch.zeros_like(mean_z[l])
            z[h * dh:(h + 1) * dh] = mean_z[l][h * dh:(h + 1) * dh]
            fv = fv + proj(z[None, None])[0, 0] - proj(torch.zeros_like(z)[None, None])[0, 0]
        zs = fvs = 0
        for x, g in zip(prompts["zero_shot"], prompts["gold"]):
            zs += int(_forward(model, x, [])[-1].argmax() == g)
            def plus(m, a, o):
                h = _first(o).clone()
                h[0, -1] += fv
                return _put(o, h)
            fvs += int(_forward(model, x, [(ad.layers[fv_layer], "forward", plus)])[-1].argmax() == g)
        n = len(prompts["gold"])
    return {"top_heads": top, "cie": cie, "zero_shot_accuracy": zs / n, "fv_accuracy": fvs / n,
            "gain": (fvs - zs) / n, "layer": fv_layer}


def tiny_model(arch: str, n_layers: int = 3, d_model: int = 16, n_heads: int = 2, vocab_size: int = 1003,
               n_positions: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A small random HF causal LM of one of the probed architectures (llama, gpt2, neox, olmo)."""
    import transformers as tf

    common = dict(vocab_size=vocab_size)
    if arch == "gpt2":
        cls, cfg = tf.GPT2LMHeadModel, tf.GPT2Config(n_layer=n_layers, n_embd=d_model, n_head=n_heads,
                                                   n_positions=n_positions, bos_token_id=0, eos_token_id=0,
                                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
    else:
        cls, cfgcls = {"llama": (tf.LlamaForCausalLM, tf.LlamaConfig), "olmo": (tf.OlmoForCausalLM, tf.OlmoConfig),
                       "neox": (tf.GPTNeoXForCausalLM, tf.GPTNeoXConfig)}[arch]
        cfg = cfgcls(num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=n_heads,
                     intermediate_size=4 * d_model, max_position_embeddings=n_positions, bos_token_id=0,
                     eos_token_id=0, pad_token_id=0, **common)
    torch.manual_seed(seed)
    return cls(cfg).to(dtype).eval()
