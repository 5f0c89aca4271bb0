"""Achieved FLOP/s of forward-bound probes and of a training step, as a fraction of measured dense matmul FLOP/s.

For each model size (three by default: how the cost grows with layers × width), the script measures:
- ``matmul``: the best FLOP/s of ``[B·T, d] @ [d, d_mlp]`` and ``[B·T, d] @ [d, V]`` at the model's shapes;
- ``bare forward``: one batched HF forward of ``B × T`` tokens (the floor a forward-bound probe can reach);
- ``InductionProbe`` (one batched forward of ``n_samples × 2n`` tokens, eager attention for the patterns) and
  ``ICLProbe`` (forwards of ``n_windows × T`` held-out tokens), FLOPs counted from the shape and the tokens;
- ``train step``: forward + backward + AdamW at ``B × T`` (3 × forward FLOPs, ``count_flops_per_token``).
FLOPs per token are ``hierlatent.model.count_flops_per_token`` (PaLM convention) at each call's sequence length.
Not covered yet (issue 14): the function-vector, Hydra and syntax probes, whose work is not one forward per
stimulus token (patched and KV-cached passes); a fraction below half of the bare forward is reported, not fixed.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_flops.py --sizes 2x64 4x128 8x256
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hierlatent.model import count_flops_per_token  # noqa: E402
from hierlatent.probes.icl import ICLProbe  # noqa: E402
from hierlatent.probes.induction import InductionProbe  # noqa: E402

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
    """Forward FLOPs of ``tokens`` tokens at sequence length ``seq``."""
    return count_flops_per_token("llama", V, layers, width, 4 * width, seq) / 3 * tokens


def measure(layers: int, width: int, batch: int, seq: int, repeats: int) -> list[tuple[str, float, float]]:
    """(row, seconds, FLOP/s) for one model size; the first row is the matmul reference."""
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
    with torch.no_grad():
        t = best_time(lambda: model(input_ids=x), repeats)
    rows.append(("bare forward", t, forward_flops(layers, width, seq, batch * seq) / t))
    ind = InductionProbe(n=seq // 2, n_samples=batch, ks=(1,))
    t = best_time(lambda: ind.run(model), repeats)
    rows.append(("InductionProbe", t, forward_flops(layers, width, seq, batch * seq) / t))
    icl = ICLProbe(n_windows=batch, batch_size=batch)
    t = best_time(lambda: icl.run(model, x), repeats)
    rows.append(("ICLProbe", t, forward_flops(layers, width, seq, batch * seq) / t))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(input_ids=x, labels=x).loss.backward()
        opt.step()

    t = best_time(step, repeats)
    rows.append(("train step", t, 3 * forward_flops(layers, width, seq, batch * seq) / t))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print one table per size: seconds, GFLOP/s, fraction of matmul and of the bare forward."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["2x64", "4x128", "8x256"], help="LAYERSxWIDTH, 4 heads each")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"threads={torch.get_num_threads()} batch={args.batch} seq={args.seq} (best of {args.repeats} after warm-up)")
    for size in args.sizes:
        layers, width = (int(v) for v in size.split("x"))
        rows = measure(layers, width, args.batch, args.seq, args.repeats)
        peak, bare = rows[0][2], rows[1][2]
        print(f"-- llama {layers}x{width}")
        for name, t, flops in rows:
            print(f"{name:16s} {t:9.4f} s {flops / 1e9:9.2f} GFLOP/s  {flops / peak:6.1%} of matmul  "
                  f"{flops / bare:6.1%} of bare forward", flush=True)


if __name__ == "__main__":
    main()
