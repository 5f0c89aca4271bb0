"""nnsight 0.8 peers of three hierlatent probes, for ``bench_peers.py``: the paper's Hydra Δ, McGrath's layer
zero-ablation (last position) and the paper's function-vector patching.

Every version is written the way nnsight 0.8's documentation teaches it (the package README, ``docs/usage/
invoke-and-batching.md``, ``docs/usage/barrier.md`` and the "Common Patterns" of its agent guide: ablation
study, activation patching, logit lens):

- the HF model wrapped in ``TransformersModel(model, tokenizer=...)``;
- **batched**: one ``model.trace()`` holding several ``tracer.invoke(input_ids=...)`` blocks, which share one
  forward pass while each block sees (and edits) only its own rows; edits are in-place writes to ``.output``;
  results go into an ``nnsight.save({})`` dict keyed by what the loop varies ("save by identity", as the docs
  ask); the unembedding is an ad-hoc ``model.lm_head(...)`` call (the docs' logit lens); the FV patch, a
  cross-invoke write, waits on a ``tracer.barrier(2)`` per layer (the docs' rule for anything that writes a
  value another invoke produced). The number of rows in one trace is capped like our ``batch_size`` (more
  invokes per trace only grow memory on a CPU);
- **loop**: the research code's shape, one trace per sample (Hydra, McGrath) or per layer (FV), still with
  nnsight's documented patterns inside.

All run under ``torch.no_grad()`` (nnsight traces keep autograd on by default; a researcher timing inference
turns it off, and our probes run without grads too). Only Llama-layout models (``model.layers[l]``,
``.self_attn``, ``model.norm``, ``lm_head``) are needed here. The numbers are computed from scratch from
what nnsight returns (the McGrath readout ``u`` is written out below, not imported), so a row's max abs diff
checks our probe against an independent implementation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor


def wrap(model: torch.nn.Module, tokenizer) -> object:
    """nnsight's ``TransformersModel`` around its own copy of ``model`` (wrapping hooks the modules it is given)."""
    from nnsight import TransformersModel

    return TransformersModel(copy.deepcopy(model), tokenizer=tokenizer)


def _groups(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), max(1, size))]


def _inputs(x: Tensor, rows: int) -> list[Tensor]:
    """Chunks of ``x`` of at most ``rows`` inputs: one invoke's inputs."""
    return [x[i:i + rows] for i in range(0, x.shape[0], rows)]


def _plan(x: Tensor, specs: list, rows: int) -> list[tuple[Tensor, list]]:
    """(inputs, invoke specs) of every trace: each invoke takes a chunk of inputs, a trace holds ``<= rows`` rows."""
    return [(xs, group) for xs in _inputs(x, rows) for group in _groups(specs, rows // xs.shape[0])]


# -- the paper's Hydra Δ ------------------------------------------------------------------------------------
def hydra_batched(nm, x: Tensor, ks: Sequence[int], rows: int) -> dict[int, list[float]]:
    """Δ_l^k = E[U(h_l)[g] − U(h_l | decoder layer l−k's output zeroed)[g]], U = lm_head (no final norm).

    One invoke per ablated layer (plus a clean one) over the same inputs, several per trace.
    """
    import nnsight

    L = len(nm.model.layers)
    sums: dict = {}
    for xs, group in _plan(x, [None] + list(range(L - min(ks))), rows):
        g = xs[:, -1:]
        with torch.no_grad(), nm.trace() as tracer:
            got = nnsight.save({})
            for a in group:
                with tracer.invoke(input_ids=xs):
                    if a is not None:
                        nm.model.layers[a].output[:] = 0  # the research code's hook: the whole residual stream
                    for l in range(L) if a is None else [a + k for k in ks if a + k < L]:
                        got[(a, l)] = nm.lm_head(nm.model.layers[l].output[:, -1]).gather(-1, g)[:, 0].sum()
        for key, v in got.items():
            sums[key] = sums.get(key, 0.0) + float(v)
    n = x.shape[0]
    return {k: [float("nan")] * k + [(sums[(None, l)] - sums[(l - k, l)]) / n for l in range(k, L)] for k in ks}


def hydra_loop(nm, x: Tensor, ks: Sequence[int]) -> dict[int, list[float]]:
    """The same Δ as the research code's evaluator computes it: per sample, a clean trace and one per (k, l)."""
    import nnsight

    L = len(nm.model.layers)
    clean, abl = torch.zeros(L, dtype=torch.float64), {k: torch.zeros(L, dtype=torch.float64) for k in ks}
    for row in x:
        ids, g = row[None], int(row[-1])
        with torch.no_grad(), nm.trace(input_ids=ids):
            u = nnsight.save([nm.lm_head(nm.model.layers[l].output[:, -1])[0, g] for l in range(L)])
        clean += torch.tensor([float(v) for v in u], dtype=torch.float64)
        for k in ks:
            for l in range(k, L):
                with torch.no_grad(), nm.trace(input_ids=ids):
                    nm.model.layers[l - k].output[:] = 0
                    v = nnsight.save(nm.lm_head(nm.model.layers[l].output[:, -1])[0, g])
                abl[k][l] += float(v)
    n = x.shape[0]
    return {k: [float("nan")] * k + ((clean - abl[k]) / n).tolist()[k:] for k in ks}


# -- McGrath et al.: zero-ablate each attention layer at the last position ----------------------------------
def _mcgrath_invoke(nm, i: int | None, ys: Tensor, got: dict) -> None:
    """One invoke's body: ablation ``i`` (None = clean); attention outputs at the last position, logit(y)."""
    L = len(nm.model.layers)
    for j in range(L):
        attn = nm.model.layers[j].self_attn.output[0]
        if j == i:
            attn[:, -1] = 0
        if i is None or j >= i:  # earlier layers of an ablated run are the clean run's
            got[(i, j)] = attn[:, -1].clone()
    if i is None:
        got["final"] = nm.model.layers[L - 1].output[:, -1].clone()
    got[(i, "logit")] = nm.lm_head.output[:, -1].gather(-1, ys[:, None])[:, 0]


def _mcgrath_effects(nm, parts: list[tuple[Tensor, dict]]) -> dict[str, list]:
    """direct/total/compensation [L] and matrix [L, L] from the saved values of every chunk of inputs."""
    L = len(nm.model.layers)
    hf = nm._module  # the wrapped HF model: its weights, outside any trace
    norm, w_u = hf.model.norm, hf.lm_head.weight.double()
    f64 = dict(dtype=torch.float64)
    direct, total, matrix, n = torch.zeros(L, **f64), torch.zeros(L, **f64), torch.zeros(L, L, **f64), 0
    for ys, got in parts:
        final = got["final"].double()
        # the frozen final RMSNorm: u·c is c's contribution to logit(y) at the clean run's norm scale
        u = w_u[ys] * norm.weight.double() / (final.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).sqrt()
        clean = torch.stack([(u * got[(None, j)].double()).sum(-1) for j in range(L)], 1)  # [n, L]
        for i in range(L):
            read = torch.stack([(u * got[(i, j)].double()).sum(-1) if j >= i else clean[:, j] for j in range(L)], 1)
            matrix[i] += (read - clean).sum(0)
            total[i] += (got[(None, "logit")].double() - got[(i, "logit")].double()).sum()
        direct += clean.sum(0)  # zero ablation removes the whole clean contribution
        n += ys.shape[0]
    direct, total, matrix = direct / n, total / n, matrix / n
    return {"direct": direct.tolist(), "total": total.tolist(), "compensation": (direct - total).tolist(),
            "matrix": matrix.tolist()}


def mcgrath_batched(nm, x: Tensor, y: Tensor, rows: int) -> dict[str, list]:
    """McGrath's direct/total/compensation and layer matrix: one invoke per ablation, several per trace."""
    import nnsight

    L, parts = len(nm.model.layers), []
    for start in range(0, x.shape[0], rows):
        xs, ys = x[start:start + rows], y[start:start + rows]
        got_all: dict = {}
        for group in _groups([None] + list(range(L)), rows // xs.shape[0]):
            with torch.no_grad(), nm.trace() as tracer:
                got = nnsight.save({})
                for i in group:
                    with tracer.invoke(input_ids=xs):
                        _mcgrath_invoke(nm, i, ys, got)
            got_all.update(got)
        parts.append((ys, got_all))
    return _mcgrath_effects(nm, parts)


def mcgrath_loop(nm, x: Tensor, y: Tensor) -> dict[str, list]:
    """The same effects one sample and one ablation per trace."""
    import nnsight

    L, parts = len(nm.model.layers), []
    for xs, ys in zip(x.split(1), y.split(1)):
        got_all: dict = {}
        for i in [None] + list(range(L)):
            with torch.no_grad(), nm.trace(input_ids=xs):
                got = nnsight.save({})
                _mcgrath_invoke(nm, i, ys, got)
            got_all.update(got)
        parts.append((ys, got_all))
    return _mcgrath_effects(nm, parts)


# -- the paper's function-vector patching -------------------------------------------------------------------
def fv_batched(nm, src: Tensor, tgt: Tensor, gold: Tensor) -> list[float]:
    """improvement_l = E[logit(gold | source's attention output added at layer l, last position) − clean]."""
    import nnsight

    L = len(nm.model.layers)
    with torch.no_grad(), nm.trace() as tracer:
        barriers = [tracer.barrier(2) for _ in range(L)]
        got = nnsight.save({})
        with tracer.invoke(input_ids=src):
            for l in range(L):
                got[("src", l)] = nm.model.layers[l].self_attn.output[0][:, -1].clone()
                barriers[l]()
        with tracer.invoke(input_ids=tgt):
            got["clean"] = nm.lm_head.output[:, -1].gather(-1, gold[:, None])[:, 0]
        for l in range(L):
            with tracer.invoke(input_ids=tgt):
                barriers[l]()  # the source invoke has bound its layer-l vector
                nm.model.layers[l].self_attn.output[0][:, -1] += got[("src", l)]
                got[l] = nm.lm_head.output[:, -1].gather(-1, gold[:, None])[:, 0]
    return [float((got[l].double() - got["clean"].double()).mean()) for l in range(L)]


def fv_loop(nm, src: Tensor, tgt: Tensor, gold: Tensor) -> list[float]:
    """The same patching one layer per trace (source and patched target invokes), after one clean trace."""
    import nnsight

    L, out = len(nm.model.layers), []
    with torch.no_grad(), nm.trace(input_ids=tgt):
        clean = nnsight.save(nm.lm_head.output[:, -1].gather(-1, gold[:, None])[:, 0])
    for l in range(L):
        with torch.no_grad(), nm.trace() as tracer:
            barrier = tracer.barrier(2)
            with tracer.invoke(input_ids=src):
                vec = nm.model.layers[l].self_attn.output[0][:, -1].clone()
                barrier()
            with tracer.invoke(input_ids=tgt):
                barrier()
                nm.model.layers[l].self_attn.output[0][:, -1] += vec
                patched = nnsight.save(nm.lm_head.output[:, -1].gather(-1, gold[:, None])[:, 0])
        out.append(float((patched.double() - clean.double()).mean()))
    return out
