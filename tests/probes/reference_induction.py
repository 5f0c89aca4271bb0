"""Slow, obviously-correct references for the induction, ICL and syntax probes (test oracle + benchmark baseline).

One sample at a time through the model, Python loops over samples, layers, heads, orders and positions,
straight from the docs/research.md#induction formulas. No code shared with the batched implementations beyond the HF forward.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.probes.adapter import probe_mode


def ref_patterns(model: nn.Module, tokens: Tensor) -> list[list[list[list[list[float]]]]]:
    """Attention weights as nested lists ``[sample][layer][head][query][key]``, one forward per sample.

    Args:
        model: HF causal LM.
        tokens: ``[S, T]`` ids.
    """
    out = []
    with probe_mode(model, eager=True):
        for row in tokens:
            att = model(input_ids=row[None].to(next(model.parameters()).device), output_attentions=True).attentions
            out.append([a[0].double().cpu().tolist() for a in att])
    return out


def _mean_pattern(pats: list, l: int, h: int, q: int, k: int) -> float:
    return sum(p[l][h][q][k] for p in pats) / len(pats)


def ref_induction(model: nn.Module, tokens: Tensor, n: int, ks: list[int], aggregate: str = "mean_pattern") -> dict:
    """Paper k-order, standard, duplicate and previous-token scores, loop by loop.

    Args:
        model: HF causal LM.
        tokens: ``[S, 2n]`` repeated stimuli.
        n: half length.
        ks: paper orders.
        aggregate: "mean_pattern" or "per_sample_max".
    """
    pats = ref_patterns(model, tokens)
    L, H = len(pats[0]), len(pats[0][0])
    k_order = [[[sum(_mean_pattern(pats, l, h, n + k + i, k + i) for i in range(n - k)) / (n - k)
                 for h in range(H)] for l in range(L)] for k in ks]
    standard = [[sum(_mean_pattern(pats, l, h, n + i, i + 1) for i in range(n)) / n for h in range(H)]
                for l in range(L)]
    duplicate = [[sum(_mean_pattern(pats, l, h, n + i, i) for i in range(n)) / n for h in range(H)] for l in range(L)]
    previous = [[sum(_mean_pattern(pats, l, h, t, t - 1) for t in range(1, 2 * n)) / (2 * n - 1) for h in range(H)]
                for l in range(L)]
    out: dict[str, Any] = {"standard": max(max(r) for r in standard), "duplicate": max(max(r) for r in duplicate),
                           "previous": max(max(r) for r in previous),
                           "per_head": {"k_order": k_order, "standard": standard, "duplicate": duplicate,
                                        "previous": previous}}
    if aggregate == "mean_pattern":
        out["k_order"] = [max(max(r) for r in per_k) for per_k in k_order]
        return out
    means, stds = [], []
    for k in ks:
        best = [max(sum(p[l][h][n + k + i][k + i] for i in range(n - k)) / (n - k) for l in range(L) for h in range(H))
                for p in pats]
        mu = sum(best) / len(best)
        means.append(mu)
        stds.append(math.sqrt(sum((b - mu) ** 2 for b in best) / len(best)))
    out["k_order"], out["k_order_std"] = means, stds
    return out


def ref_icl(model: nn.Module, windows: Tensor, early: int, late: int) -> float:
    """Mean loss at ``late`` minus mean loss at ``early`` (target positions), one window at a time.

    Args:
        model: HF causal LM.
        windows: ``[N, T]`` held-out ids.
        early: early target position.
        late: late target position.
    """
    total = 0.0
    with probe_mode(model, eager=False):
        for row in windows:
            logp = model(input_ids=row[None].to(next(model.parameters()).device)).logits[0].double().log_softmax(-1)
            total += float(-logp[late - 1, row[late]]) - float(-logp[early - 1, row[early]])
    return total / len(windows)


def ref_syntax(model: nn.Module, prompts: Tensor, ranges: dict[str, tuple[int, int]], n_prefix: int = 0) -> dict:
    """Role masses after [s], [s v], [s v o c]: a separate forward per prompt prefix, a Python sum per mass.

    Args:
        model: HF causal LM.
        prompts: ``[S, n_prefix + 4]`` ids ``prefix s v o c``.
        ranges: role -> id range [lo, hi).
        n_prefix: number of prefix tokens.
    """
    reads = {"verb_after_subject": (1, "verbs"), "object_after_subject_verb": (2, "objects"),
             "subject_after_svoc": (4, "subjects")}
    out = {}
    with probe_mode(model, eager=False):
        for key, (length, role) in reads.items():
            lo, hi = ranges[role]
            masses = []
            for row in prompts:
                ids = row[: n_prefix + length][None].to(next(model.parameters()).device)
                probs = model(input_ids=ids).logits[0, -1].double().softmax(-1).tolist()
                masses.append(sum(probs[t] for t in range(lo, hi)))
            out[key] = sum(masses) / len(masses)
    return out


def reference_suite(model: nn.Module, induction: Any = None, icl: Any = None, syntax: Any = None,
                    heldout: Tensor | None = None) -> dict[str, Any]:
    """Reference results of the given probe instances on the same stimuli, plus seconds per probe.

    Args:
        model: HF causal LM.
        induction: an ``InductionProbe`` or None.
        icl: an ``ICLProbe`` or None (needs ``heldout``).
        syntax: a ``SyntaxProbe`` or None.
        heldout: held-out windows for ``icl``.

    Returns:
        ``{"induction": …, "induction.icl": …, "syntax": …, "seconds": {name: s}}`` for the probes given.
    """
    from hierlatent.probes.adapter import ModelAdapter

    adapter, out, seconds = ModelAdapter.from_model(model), {}, {}
    if induction is not None:
        t0 = time.perf_counter()
        out["induction"] = ref_induction(model, induction.stimulus(adapter.vocab_size), induction.n,
                                         list(induction.ks), induction.aggregate)
        seconds["induction"] = time.perf_counter() - t0
    if icl is not None:
        t0 = time.perf_counter()
        windows = heldout[: icl.n_windows, : adapter.max_positions or heldout.shape[1]].long()
        early, late = icl.positions(windows.shape[1])
        out["induction.icl"] = {"score": ref_icl(model, windows, early, late), "early_position": early,
                                "late_position": late}
        seconds["induction.icl"] = time.perf_counter() - t0
    if syntax is not None:
        t0 = time.perf_counter()
        out["syntax"] = ref_syntax(model, syntax.prompts(), syntax.ranges, len(syntax.prefix))
        seconds["syntax"] = time.perf_counter() - t0
    out["seconds"] = seconds
    return out


def bench_entries_induction(model: nn.Module, heldout: Tensor, args: Any) -> list[tuple[str, Any, Any, Any]]:
    """(name, batched, reference, to-comparable) rows for ``tests/benchmarks/bench_probes.py``.

    Args:
        model: HF causal LM (the paper's shape in the benchmark).
        heldout: held-out windows ``[n, T]``.
        args: the benchmark's parsed flags (``quick``, ``batch_size``).
    """
    from hierlatent.callbacks.probes import to_jsonable
    from hierlatent.probes.icl import ICLProbe
    from hierlatent.probes.induction import InductionProbe
    from hierlatent.probes.syntax import SyntaxProbe

    n, samples = (16, 4) if getattr(args, "quick", False) else (64, 20)
    induction = InductionProbe(n=n, n_samples=samples)
    per_sample = InductionProbe(n=n, n_samples=samples, aggregate="per_sample_max")
    icl = ICLProbe(n_windows=len(heldout), batch_size=args.batch_size)
    syntax = SyntaxProbe(n_samples=20 if getattr(args, "quick", False) else 100)

    def ref_of(probe: Any) -> Any:
        return lambda: reference_suite(model, induction=probe)["induction"]

    return [
        ("induction (mean pattern)", lambda: to_jsonable(induction.run(model)), ref_of(induction), lambda r: r),
        ("induction (per-sample max)", lambda: to_jsonable(per_sample.run(model)), ref_of(per_sample), lambda r: r),
        ("ICL score", lambda: to_jsonable(icl.run(model, heldout)),
         lambda: reference_suite(model, icl=icl, heldout=heldout)["induction.icl"], lambda r: r),
        ("syntax", lambda: to_jsonable(syntax.run(model)), lambda: reference_suite(model, syntax=syntax)["syntax"],
         lambda r: r),
    ]
