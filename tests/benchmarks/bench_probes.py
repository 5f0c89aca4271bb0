"""Benchmark: the paper's probe suite at one checkpoint, batched probes vs one-at-a-time references.

Model: the paper's shape (Llama, 16 layers × 256 wide, 4 heads, MLP 1024, vocabulary 1003, context 512),
random weights. Every probe runs batched (``hierlatent.probes``) and as its slow, obviously-correct
reference (``tests/probes/reference_*.py``); the script prints per-probe seconds, the speed-up and the max
absolute difference of all numbers, then the whole-suite totals (target: ≥ 10× on the suite).

    python tests/benchmarks/bench_probes.py            # paper settings (100 held-out windows × 512)
    python tests/benchmarks/bench_probes.py --quick    # small stimuli, a few minutes on a laptop CPU
    python tests/benchmarks/bench_probes.py --all-positions   # + McGrath ablating every position (outside the total)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # for tests.probes.reference_*

from hierlatent.probes.function_vectors import FunctionVectorProbe, icl_prompts, paper_prompts  # noqa: E402
from hierlatent.probes.hydra import HydraProbe  # noqa: E402
from tests.probes import reference_hydra_fv as ref  # noqa: E402


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
    """(name, batched, reference, to-comparable) for the Hydra and function-vector probes."""
    hydra = HydraProbe(ks=(1, 2), n_heldout=len(heldout), mcgrath=False, batch_size=args.batch_size)
    mcgrath = HydraProbe(ks=(1,), n_heldout=len(heldout), batch_size=args.batch_size)  # paper.yaml: last position
    everywhere = HydraProbe(ks=(1,), n_heldout=len(heldout), batch_size=args.batch_size, positions="all")
    fv = FunctionVectorProbe(n_pairs=args.n_pairs, todd=False, batch_size=64)
    todd = FunctionVectorProbe(n_pairs=1, n_icl_prompts=args.n_icl, n_shots=args.n_shots, batch_size=64)
    x, y = heldout[:, :-1], heldout[:, -1]
    src, _, tgt, gold = paper_prompts(fv.pairs(), fv.connector)
    prompts = icl_prompts(args.n_icl, args.n_shots, todd.subject_range, todd.verb_range, todd.object_range,
                          todd.connector, todd.seed)
    def paper(k_dict: dict) -> dict:  # the probe's JSON {"k1": {"1": Δ}} -> the reference's {1: [NaN, Δ, ...]}
        return {k: [math.nan] * k + [k_dict[f"k{k}"][str(l)] for l in range(k, 16)] for k in (1, 2)}

    mcgrath_keys = ("direct", "total", "matrix")
    extra = [("hydra McGrath (zero, all positions)*", lambda: everywhere.run(model, heldout)["mcgrath"],
              lambda: ref.ref_hydra_mcgrath(model, x, y, "zero", positions="all"),
              lambda r: {k: r[k] for k in mcgrath_keys})] if args.all_positions else []
    return [
        ("hydra paper k=1,2", lambda: paper(hydra.run(model, heldout)["paper"]),
         lambda: ref.ref_hydra_paper(model, heldout, (1, 2)), lambda r: r),
        ("hydra McGrath (zero, last position)", lambda: mcgrath.run(model, heldout)["mcgrath"],
         lambda: ref.ref_hydra_mcgrath(model, x, y, "zero", positions="last"),
         lambda r: {k: r[k] for k in mcgrath_keys}),
        ("function vectors (paper)", lambda: fv.run(model)["improvement"],
         lambda: ref.ref_fv_paper(model, src, tgt, gold), lambda r: r),
        ("function vectors (Todd)", lambda: todd.run(model)["todd"],
         lambda: ref.ref_fv_todd(model, prompts, todd.n_top_heads),
         lambda r: {k: r[k] for k in ("cie", "top_heads", "zero_shot_accuracy", "fv_accuracy")}),
    ] + extra


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
    p.add_argument("--all-positions", action="store_true",
                   help="also time McGrath with ablation at every position (HydraProbe positions=all; "
                        "not in callbacks/paper.yaml, so outside the suite total)")
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
    for name, batched, reference, comparable in other_entries(model, heldout, args) + hydra_fv_entries(model, heldout, args):
        out_b, t_b = timed(batched, args.device)
        out_r, t_r = timed(reference, args.device)
        diff = max_diff(comparable(out_b), comparable(out_r))
        worst = max(worst, diff)
        if not name.endswith("*"):  # starred rows are options outside callbacks/paper.yaml
            tot_b, tot_r = tot_b + t_b, tot_r + t_r
        print(f"{name:38s} {t_b:10.2f} {t_r:12.2f} {t_r / t_b:8.1f}x {diff:13.2e}", flush=True)
    print(f"{'whole suite (callbacks/paper.yaml)':38s} {tot_b:10.2f} {tot_r:12.2f} {tot_r / tot_b:8.1f}x {worst:13.2e}  (target >= 10x)")


if __name__ == "__main__":
    main()
