"""Achieved FLOP/s of the probes and of a training step, as a fraction of measured dense matmul FLOP/s.

For each model size (three by default: how the cost grows with layers × width), the script measures:
- ``matmul``: the best FLOP/s of ``[B·T, d] @ [d, d_mlp]`` and ``[B·T, d] @ [d, V]`` at the model's shapes;
- ``bare forward``: one batched HF forward of ``B × T`` tokens (the floor a forward-bound probe can reach);
- ``InductionProbe`` (one batched forward of ``n_samples × 2n`` tokens, eager attention for the patterns) and
  ``ICLProbe`` (forwards of ``n_windows × T`` held-out tokens), FLOPs counted from the shape and the tokens;
- ``FunctionVectorProbe`` (paper patching, ``todd=False``) on ``B·T // 6`` pairs (as many source tokens as
  the bare forward), ``HydraProbe`` (paper Δ k = 1, 2 + McGrath zero ablation at the last position, as
  ``callbacks/paper.yaml``; k = 1 only at 2 layers, where k = 2 leaves no layer) on the ``B × T`` windows,
  and ``SyntaxProbe`` on ``B·T // 4`` prompts;
- ``train step``: forward + backward + AdamW at ``B × T`` (3 × forward FLOPs, ``count_flops_per_token``).

FLOPs are counted from the shape and what is actually computed (``work_flops``): per token row forwarded,
``2·L·(4d² + 3·d·d_mlp)`` matmul FLOPs plus ``4·L·d·K`` for attention over its K keys (PaLM convention: the
prefill's K is its sequence length, no causal halving; a KV-cached one-token row has K = cache length + 1),
plus ``2·d·V`` per row whose logits are computed (``logits_to_keep=1`` keeps one row per sequence). So:
- FV: source prompts ``P × 6`` (K = 6, one logit row each), target prefixes ``P × 5`` (K = 5, one logit row),
  then one step of ``L + 1`` positions per prompt: ``P·(L + 1)`` rows (clean + one patch per layer, K = 6, a
  logit row each; the mask hides the other rows' ``L`` keys, which SDPA still scores, not counted);
- Hydra (``batch_size = 16`` windows a chunk, all ``N`` here): McGrath's prefix ``N × (T − 2)`` (K = T − 2,
  one logit row), then one step of ``L + 2`` positions per window: ``N·(L + 1)`` ablation rows (K = T − 1,
  a logit row each) and the clean ``follow`` row (K = T, a logit row); the step's mask hides the other rows'
  ``L + 1`` keys, which SDPA still scores (not counted, < 0.5 % of the FLOPs); then the paper Δ's ``L − 1``
  zeroed one-token rows (K = 1); the dot-product read-outs are ``O(N·L²·d)`` and left out (< 0.1 %);
- Syntax: ``S × 4`` prompt tokens (K = 4) and 3 logit rows per prompt (positions 0, 1, 3).
Masks, hooks and softmaxes are not FLOPs and are not counted: they are part of why a probe falls below the
bare forward.

The matmul terms match ``torch.utils.flop_counter.FlopCounterMode``'s ``mm + bmm`` count at 2x64 (to 0.01 %;
its ``mm`` alone is within 1.5 % at 4x128 and 8x256); that counter does not see CPU flash attention, so the
``4·L·d·K`` term is not checked.

Where a probe falls below half of the bare forward (one thread, CPU; README Speed "FLOP floor"):
- ``HydraProbe`` (34 % at 2x64; 62–63 % at 4x128, 75–76 % at 8x256: two runs, batch 4, seq 64, load ≤ 1.0,
  2026-12-02; 25–29 %, 28–38 % and 46–51 % before the change below): a chunk's prefixes run as one batch and
  its clean row, L ablations and follow row as ``L + 2`` positions of one masked step over the single KV
  cache (no cache copy per ablation). At 2x64 fixed costs dominate: three forwards' HF Python (a one-token
  forward takes ~0.56 ms there, the bare forward 2.9 ms) and four ``probe_mode`` snapshots (~0.36 ms each).
- ``FunctionVectorProbe`` (51–91 %) and ``SyntaxProbe`` (42–97 %) reach half or more but for one of three
  runs of syntax at 2x64: their prompts are 6 and 4 tokens, but up to 64 (FV) or all (syntax) prompts share
  each forward, and FV's one-token step carries ``L + 1`` rows per prompt. At 2x64 a bare forward takes 3 ms,
  so HF's per-forward Python (a few hundred µs) and the machine's noise dominate (``InductionProbe`` and
  ``ICLProbe`` spread as widely there between runs); from 4x128 on both stay at 62 % or more.

    OMP_NUM_THREADS=1 python -m tests.benchmarks.bench_flops --sizes 2x64 4x128 8x256   # from the repo root
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch

from hierlatent.model import count_flops_per_token
from hierlatent.probes.function_vectors import FunctionVectorProbe
from hierlatent.probes.hydra import HydraProbe
from hierlatent.probes.icl import ICLProbe
from hierlatent.probes.induction import InductionProbe
from hierlatent.probes.syntax import SyntaxProbe

V = 1003


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Minimum seconds of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def forward_flops(layers: int, width: int, seq: int, tokens: int) -> float:
    """Forward FLOPs of ``tokens`` tokens at sequence length ``seq``, logits at every token."""
    return count_flops_per_token("llama", V, layers, width, 4 * width, seq) / 3 * tokens


def work_flops(layers: int, width: int, work: list[tuple[int, int, int]]) -> float:
    """FLOPs of ``(rows, keys, logit_rows)`` passes: token rows forwarded, the keys each attends to, and the
    rows whose ``lm_head`` logits are computed (module docstring)."""
    body = 2 * layers * (4 * width * width + 3 * width * 4 * width)
    return float(sum(rows * (body + 4 * layers * width * keys) + 2 * width * V * logit_rows
                     for rows, keys, logit_rows in work))


def probe_work(layers: int, batch: int, seq: int) -> dict[str, list[tuple[int, int, int]]]:
    """The ``(rows, keys, logit_rows)`` passes each patched / KV-cached probe runs (module docstring)."""
    pairs, n, syn = batch * seq // 6, batch, batch * seq // 4
    R = layers + 1
    return {"FunctionVectorProbe": [(6 * pairs, 6, pairs), (5 * pairs, 5, pairs), (R * pairs, 6, R * pairs)],
            "HydraProbe": [((seq - 2) * n, seq - 2, n), (R * n, seq - 1, R * n), (n, seq, n),
                           (layers - 1, 1, layers - 1)],
            "SyntaxProbe": [(4 * syn, 4, 3 * syn)]}


def probe_calls(layers: int, batch: int, seq: int, x: torch.Tensor) -> dict[str, Callable[[torch.nn.Module], object]]:
    """name -> call of the FV (paper), Hydra (paper preset) and syntax probes at the sizes ``probe_work`` counts."""
    fv = FunctionVectorProbe(n_pairs=batch * seq // 6, todd=False, batch_size=64)
    hydra = HydraProbe(ks=tuple(k for k in (1, 2) if k < layers), ablation="zero", positions="last", n_heldout=batch)
    syntax = SyntaxProbe(n_samples=batch * seq // 4)
    return {"FunctionVectorProbe": fv.run, "HydraProbe": lambda m: hydra.run(m, x), "SyntaxProbe": syntax.run}


ROWS = ("InductionProbe", "ICLProbe", "FunctionVectorProbe", "HydraProbe", "SyntaxProbe", "train step")


def train_seconds(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Best seconds of one forward + backward + AdamW step on ``x`` (the model is left in train mode)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(input_ids=x, labels=x).loss.backward()
        opt.step()

    return best_time(step, repeats)


def measure(layers: int, width: int, batch: int, seq: int, repeats: int,
            only: Sequence[str] = ROWS) -> list[tuple[str, float, float]]:
    """(row, seconds, FLOP/s) for one model size: the matmul reference, the bare forward, then the ``only`` rows."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=4,
                                         num_key_value_heads=4, intermediate_size=4 * width, vocab_size=V,
                                         max_position_embeddings=seq)).eval()
    a = torch.randn(batch * seq, width)
    rows = []
    for k, n in ((width, 4 * width), (width, V)):
        w = torch.randn(k, n)
        t = best_time(lambda: a @ w, repeats)
        rows.append((f"matmul [{batch * seq}x{k}]@[{k}x{n}]", t, 2 * batch * seq * k * n / t))
    peak = max(r[2] for r in rows)
    rows = [("matmul (best)", min(r[1] for r in rows), peak)]
    x = torch.randint(0, 1000, (batch, seq))
    fwd = forward_flops(layers, width, seq, batch * seq)
    with torch.no_grad():
        t = best_time(lambda: model(input_ids=x), repeats)
    rows.append(("bare forward", t, fwd / t))
    ind = InductionProbe(n=seq // 2, n_samples=batch, ks=(1,))
    icl = ICLProbe(n_windows=batch, batch_size=batch)
    work = probe_work(layers, batch, seq)
    timed = {"InductionProbe": (lambda: ind.run(model), fwd), "ICLProbe": (lambda: icl.run(model, x), fwd)}
    timed.update({name: (lambda call=call: call(model), work_flops(layers, width, work[name]))
                  for name, call in probe_calls(layers, batch, seq, x).items()})
    for name, (call, flops) in timed.items():
        if name in only:
            t = best_time(call, repeats)
            rows.append((name, t, flops / t))
    if "train step" in only:
        t = train_seconds(model, x, repeats)
        rows.append(("train step", t, 3 * fwd / t))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print one table per size: seconds, GFLOP/s, fraction of matmul and of the bare forward."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["2x64", "4x128", "8x256"], help="LAYERSxWIDTH, 4 heads each")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--probes", nargs="+", default=list(ROWS), choices=ROWS, metavar="ROW",
                   help=f"rows after the matmul and bare-forward references (default all: {', '.join(ROWS)})")
    args = p.parse_args(argv)
    print(f"threads={torch.get_num_threads()} batch={args.batch} seq={args.seq} (best of {args.repeats} after warm-up)")
    for size in args.sizes:
        layers, width = (int(v) for v in size.split("x"))
        rows = measure(layers, width, args.batch, args.seq, args.repeats, args.probes)
        peak, bare = rows[0][2], rows[1][2]
        print(f"-- llama {layers}x{width}")
        for name, t, flops in rows:
            print(f"{name:19s} {t:9.4f} s {flops / 1e9:9.2f} GFLOP/s  {flops / peak:6.1%} of matmul  "
                  f"{flops / bare:6.1%} of bare forward", flush=True)


if __name__ == "__main__":
    main()
