"""Benchmark: the paper's probe suite at one checkpoint, batched probes vs one-at-a-time references.

Model: the paper's shape (Llama, 16 layers × 256 wide, 4 heads, MLP 1024, vocabulary 1003, context 512),
random weights. Every probe runs batched (``hierlatent.probes``) and as its slow, obviously-correct
reference (``tests/probes/reference_*.py``); the script prints per-probe seconds, the speed-up and the max
absolute difference of all numbers, then the whole-suite totals (target: ≥ 10× on the suite).

From the repository root (``-m`` makes ``tests.probes.reference_*`` importable):

    python -m tests.benchmarks.bench_probes            # paper settings (100 held-out windows × 512)
    python -m tests.benchmarks.bench_probes --quick    # small stimuli, a few minutes on a laptop CPU
    python -m tests.benchmarks.bench_probes --extras   # + rows for options outside callbacks/paper.yaml
    python -m tests.benchmarks.bench_probes --extras --only headwise   # just the rows whose name contains it
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from hierlatent.probes.function_vectors import FunctionVectorProbe, icl_prompts, paper_prompts
from hierlatent.probes.headwise import hydra_headwise
from hierlatent.probes.hydra import HydraProbe
from tests.probes import reference_hydra_fv as ref
from tests.probes.reference_headwise import ref_hydra_headwise


def paper_model(dtype: torch.dtype, device: str, seed: int = 0) -> torch.nn.Module:
    """The paper's Llama shape with random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(num_hidden_layers=16, hidden_size=256, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=1024, vocab_size=1003, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()


def numbers(obj) -> list[float]:
    """All numbers of a nested result, in order (bools and strings skipped, NaN kept)."""
    if isinstance(obj, dict):
        return [x for k in sorted(obj, key=str) for x in numbers(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in numbers(v)]
    if isinstance(obj, torch.Tensor):
        return numbers(obj.tolist())
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [float(obj)]
    return []


def max_diff(a, b) -> float:
    """Max |a − b| over matching numbers (inf when the structures differ; NaN positions must agree)."""
    xa, xb = numbers(a), numbers(b)
    if len(xa) != len(xb):
        return math.inf
    diffs = [0.0 if (math.isnan(p) and math.isnan(q)) else abs(p - q) for p, q in zip(xa, xb)]
    return max(diffs, default=0.0)


def timed(fn: Callable[[], object], device: str) -> tuple[object, float]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def hydra_fv_entries(model, heldout: torch.Tensor, args) -> list[tuple[str, Callable, Callable, Callable]]:
    """(name, batched, reference, to-comparable) for the Hydra and function-vector probes.

    The Hydra row is ``HydraProbe`` as ``callbacks/paper.yaml`` configures it (paper Δ for k = 1, 2 and McGrath
    zero ablation at the last position, sharing one clean prefix); ``--extras`` adds starred rows for options
    outside the preset, which stay out of the suite total.
    """
    kw = dict(n_heldout=len(heldout), batch_size=args.batch_size)
    hydra = HydraProbe(ks=(1, 2), ablation="zero", positions="last", **kw)
    fv = FunctionVectorProbe(n_pairs=args.n_pairs, todd=False, batch_size=64)
    todd = FunctionVectorProbe(n_pairs=1, n_icl_prompts=args.n_icl, n_shots=args.n_shots, batch_size=64)
    x, y = heldout[:, :-1], heldout[:, -1]
    src, _, tgt, gold = paper_prompts(fv.pairs(), fv.connector)
    prompts = icl_prompts(args.n_icl, args.n_shots, todd.subject_range, todd.verb_range, todd.object_range,
                          todd.connector, todd.seed)

    def paper(k_dict: dict) -> dict:  # the probe's JSON {"k1": {"1": Δ}} -> the reference's {1: [NaN, Δ, ...]}
        return {k: [math.nan] * k + [k_dict[f"k{k}"][str(l)] for l in range(k, 16)] for k in (1, 2)}

    def mcgrath(r: dict) -> dict:  # {} when McGrath is off
        return {k: r[k] for k in ("direct", "total", "matrix") if k in r}

    def ours(probe: HydraProbe) -> Callable:
        def run() -> dict:
            r = probe.run(model, heldout)
            return {"paper": paper(r["paper"]), "mcgrath": mcgrath(r.get("mcgrath", {}))}
        return run

    def reference(positions: str | None) -> Callable:
        return lambda: {"paper": ref.ref_hydra_paper(model, heldout, (1, 2)),
                        "mcgrath": {} if positions is None else
                        mcgrath(ref.ref_hydra_mcgrath(model, x, y, "zero", positions=positions))}

    extras = [
        ("hydra paper k=1,2 without McGrath*", ours(HydraProbe(ks=(1, 2), mcgrath=False, **kw)), reference(None)),
        ("hydra paper + McGrath, all positions*", ours(HydraProbe(ks=(1, 2), positions="all", **kw)),
         reference("all")),
        ("hydra headwise McGrath (last)*", lambda: hydra_headwise(model, x, y, "zero", args.batch_size),
         lambda: ref_hydra_headwise(model, x, y, "zero")),
    ] if args.extras else []
    return [
        ("hydra: paper k=1,2 + McGrath (last)", ours(hydra), reference("last"), lambda r: r),
        ("function vectors (paper)", lambda: fv.run(model)["improvement"],
         lambda: ref.ref_fv_paper(model, src, tgt, gold), lambda r: r),
        ("function vectors (Todd)", lambda: todd.run(model)["todd"],
         lambda: ref.ref_fv_todd(model, prompts, todd.n_top_heads),
         lambda r: {k: r[k] for k in ("cie", "top_heads", "zero_shot_accuracy", "fv_accuracy")}),
    ] + [(name, b, r, lambda out: out) for name, b, r in extras]


def other_entries(model, heldout: torch.Tensor, args) -> list[tuple[str, Callable, Callable, Callable]]:
    """Induction (k-order, standard, duplicate/previous), ICL and syntax rows (tests/probes/reference_induction.py)."""
    from tests.probes.reference_induction import bench_entries_induction

    return bench_entries_induction(model, heldout, args)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small stimuli (4 windows × 64 tokens, 4 prompts)")
    p.add_argument("--n-heldout", type=int, default=100, help="held-out windows (paper: 100)")
    p.add_argument("--window", type=int, default=512, help="window length (paper context: 512)")
    p.add_argument("--n-pairs", type=int, default=16, help="function-vector prompt pairs (paper: 16)")
    p.add_argument("--n-icl", type=int, default=16, help="Todd ICL prompts")
    p.add_argument("--n-shots", type=int, default=5, help="Todd demonstrations per prompt")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass of the batched probes")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--extras", action="store_true",
                   help="also time options outside callbacks/paper.yaml (rows marked *, not in the suite total): "
                        "the paper's Hydra Δ without McGrath, McGrath ablating every position, headwise McGrath")
    p.add_argument("--only", metavar="TEXT", help="run only the rows whose name contains TEXT (the total then "
                   "covers those rows, not the whole suite)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.quick:
        args.n_heldout, args.window, args.n_pairs, args.n_icl, args.n_shots = 4, 64, 4, 4, 3
    model = paper_model(getattr(torch, args.dtype), args.device)
    gen = torch.Generator().manual_seed(0)
    heldout = torch.randint(0, 1000, (args.n_heldout, args.window), generator=gen)  # stands in for test text
    print(f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} "
          f"heldout={args.n_heldout}x{args.window} pairs={args.n_pairs} icl={args.n_icl}x{args.n_shots}-shot")
    print(f"{'probe':38s} {'batched s':>10s} {'reference s':>12s} {'speed-up':>9s} {'max abs diff':>13s}")
    tot_b = tot_r = 0.0
    worst = 0.0
    entries = other_entries(model, heldout, args) + hydra_fv_entries(model, heldout, args)
    if args.only:
        entries = [e for e in entries if args.only in e[0]]
        if not entries:
            p.error(f"--only: no row name contains {args.only!r}")
    for name, batched, reference, comparable in entries:
        out_b, t_b = timed(batched, args.device)
        out_r, t_r = timed(reference, args.device)
        diff = max_diff(comparable(out_b), comparable(out_r))
        worst = max(worst, diff)
        if not name.endswith("*") or args.only:  # starred rows are options outside callbacks/paper.yaml
            tot_b, tot_r = tot_b + t_b, tot_r + t_r
        print(f"{name:38s} {t_b:10.2f} {t_r:12.2f} {t_r / t_b:8.1f}x {diff:13.2e}", flush=True)
    total = f"rows matching {args.only!r}" if args.only else "whole suite (callbacks/paper.yaml)"
    print(f"{total:38s} {tot_b:10.2f} {tot_r:12.2f} {tot_r / tot_b:8.1f}x "
          f"{worst:13.2e}  (target >= 10x)")


if __name__ == "__main__":
    main()
