"""Slow, obviously-correct reference for headwise Hydra (test oracle + benchmark).

One sample and one ablated head at a time, full forward passes (no KV cache, no batching of ablations),
one forward pre-hook on the attention's output projection overwriting one head's slice. Shares no code
with ``hierlatent.probes.headwise`` beyond module lookup.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hierlatent.probes.adapter import ModelAdapter, probe_mode
from tests.probes.reference_hydra_fv import _forward, _frozen_read, _out_proj


def _pre_recorder(store: dict, key, where: slice):
    def fn(module, args):
        store[key] = args[0][0, where].clone()
    return fn


def ref_hydra_headwise(model: nn.Module, inputs: Tensor, targets: Tensor | None = None,
                       ablation: str = "zero", positions: str = "last") -> dict:
    """Headwise direct/total/compensation [L][H], one sample and one (layer, head) at a time."""
    ad = ModelAdapter.from_model(model)
    L, H, head = ad.n_layers, ad.n_heads, model.get_output_embeddings()
    where = slice(-1, None) if positions == "last" else slice(None)
    projs = [_out_proj(ad.attention(l)) for l in range(L)]
    with probe_mode(model, eager=False), torch.no_grad():
        seen = {l: [] for l in range(L)}
        for x in inputs if ablation == "mean" else []:  # each layer's mean o_proj input over the ablated positions
            store = {}
            _forward(model, x, [(projs[l], "pre", _pre_recorder(store, l, where)) for l in range(L)])
            for l in range(L):
                seen[l].append(store[l])
        mean = {l: torch.cat(seen[l]).mean(0) for l in seen if seen[l]}
        direct, total = [[0.0] * H for _ in range(L)], [[0.0] * H for _ in range(L)]
        for n, x in enumerate(inputs):
            clean = {}
            regs = [(projs[l], "pre", _pre_recorder(clean, l, slice(-1, None))) for l in range(L)]
            regs.append((ad.layers[L - 1], "forward",
                         lambda m, a, o: clean.__setitem__("final", (o[0] if isinstance(o, tuple) else o)[0, -1])))
            logits = _forward(model, x, regs)
            y = int(logits[-1].argmax()) if targets is None else int(targets[n])
            for l in range(L):
                z = clean[l][0]  # [HD] at the last position
                dh = z.shape[0] // H
                for h in range(H):
                    s = slice(h * dh, (h + 1) * dh)
                    r = torch.zeros(dh, dtype=z.dtype) if ablation == "zero" else mean[l][s]

                    def kill(m, a, s=s, r=r):
                        zz = a[0].clone()
                        zz[0, where, s] = r
                        return (zz, *a[1:])

                    logits_abl = _forward(model, x, [(projs[l], "pre", kill)])
                    total[l][h] += float(logits[-1, y] - logits_abl[-1, y]) / len(inputs)
                    only = torch.zeros_like(z)
                    only[s] = z[s] - r
                    contrib = projs[l](only[None, None])[0, 0] - projs[l](torch.zeros_like(z)[None, None])[0, 0]
                    direct[l][h] += _frozen_read(ad, head, clean["final"], contrib, y) / len(inputs)
    comp = [[d - t for d, t in zip(dr, tr)] for dr, tr in zip(direct, total)]
    return {"direct": direct, "total": total, "compensation": comp, "ablation": ablation, "positions": positions}
