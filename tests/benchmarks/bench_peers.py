"""Benchmark against the peers a researcher would otherwise use: TransformerLens 4.x (``pip install -e .[bench]``).

Same model (a random HF Llama, saved locally and booted into ``TransformerBridge`` offline with a local
WordLevel tokenizer), same inputs, one process; the rows are timed interleaved (ours, peer, ours, peer, …)
after one warm-up call of each, and the median is reported. Every row first checks that the numbers agree
(max abs diff printed) and prints a ratio only when they do (diff <= 1e-4).

Rows:
- ``induction``: ``InductionProbe`` (standard, duplicate and previous-token scores per layer × head) against
  TL's ``run_with_cache`` (attention patterns only) plus the same diagonal means.
- ``detect_head``: TL's stock ``detect_head`` (one ``run_with_cache`` per string, ``mul`` measure) for the
  induction, duplicate and previous-token patterns, against our batched patterns scored the same way.

Not done yet (issue 14): the nnsight 0.8 rows (paper Hydra Δ, McGrath layer ablation, paper FV patching
with batched invokes as nnsight's documentation teaches) — the last line lists only the rows above.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_peers.py --layers 4 --width 128 --n 32 --samples 8
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hierlatent.probes.adapter import attention_patterns  # noqa: E402
from hierlatent.probes.induction import InductionProbe, diagonal_mean  # noqa: E402

AGREE = 1e-4


def build(layers: int, width: int, heads: int, ctx: int, directory: Path):
    """A random Llama, its local WordLevel tokenizer (ids = ``t<i>``) and the TransformerBridge over both."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads,
                      num_key_value_heads=heads, intermediate_size=4 * width, vocab_size=1003,
                      max_position_embeddings=ctx)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(directory)
    tk = Tokenizer(models.WordLevel({f"t{i}": i for i in range(1003)}, unk_token="t1001"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="t1001", pad_token="t1002", eos_token="t1000")
    tok.save_pretrained(directory)
    # the bridge takes over the modules of the model it is given: it gets its own copy of the same weights
    bridge = TransformerBridge.boot_transformers(str(directory), hf_model=copy.deepcopy(model), device="cpu",
                                                 tokenizer=tok)
    return model, bridge


def tl_induction(bridge, x: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """TL ``run_with_cache`` (patterns only) + the probe's definitions: per-head [L, H] scores."""
    _, cache = bridge.run_with_cache(x, names_filter=lambda name: name.endswith("attn.hook_pattern"))
    mean = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"] for l in range(bridge.cfg.n_layers)]).double().mean(1)
    return {"standard": diagonal_mean(mean, n - 1, start=1), "duplicate": diagonal_mean(mean, n),
            "previous": diagonal_mean(mean, 1)}


def ours_induction(model, probe: InductionProbe) -> dict[str, torch.Tensor]:
    """``InductionProbe.run``'s per-head scores."""
    per_head = probe.run(model)["per_head"]
    return {k: torch.as_tensor(per_head[k], dtype=torch.float64) for k in ("standard", "duplicate", "previous")}


_HEADS = {"induction_head": "standard", "duplicate_token_head": "duplicate", "previous_token_head": "previous"}


def tl_detect(bridge, strings: list[str]) -> dict[str, torch.Tensor]:
    """TL's stock ``detect_head`` for the three head types, [L, H] each."""
    from transformer_lens.head_detector import detect_head

    return {name: detect_head(bridge, strings, name).double() for name in _HEADS}


def ours_detect(model, bridge, strings: list[str]) -> dict[str, torch.Tensor]:
    """The ``mul`` score of ``detect_head`` from our batched patterns of the very tokens TL feeds its model."""
    from transformer_lens import head_detector as hd

    tokens = torch.cat([bridge.to_tokens(s) for s in strings])  # equal lengths: r‖r strings
    patterns = attention_patterns(model, tokens, None).double()  # [L, B, H, T, T]
    makers = {"induction_head": hd.get_induction_head_detection_pattern,
              "duplicate_token_head": hd.get_duplicate_token_head_detection_pattern,
              "previous_token_head": hd.get_previous_token_head_detection_pattern}
    out = {}
    for name, make in makers.items():
        det = torch.stack([make(t[None].cpu()).double() for t in tokens])  # [B, T, T]
        out[name] = ((patterns * det[None, :, None]).sum((-1, -2)) / patterns.sum((-1, -2))).mean(1)
    return out


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def interleaved(ours: Callable, peer: Callable, repeats: int) -> tuple[float, float, object, object]:
    """Median seconds of ``ours`` and ``peer`` timed alternately after one warm-up each; their last outputs."""
    out_o, out_p = ours(), peer()
    t_o, t_p = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out_o = ours()
        t_o.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_p = peer()
        t_p.append(time.perf_counter() - t0)
    return statistics.median(t_o), statistics.median(t_p), out_o, out_p


def main(argv: list[str] | None = None) -> None:
    """Build the model, time every row, print the table and the ``peers:`` line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--n", type=int, default=64, help="random half of the repeated stimulus")
    p.add_argument("--samples", type=int, default=20, help="repeated sequences")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each side")
    args = p.parse_args(argv)
    print(f"threads={torch.get_num_threads()} model=llama {args.layers}x{args.width}x{args.heads} "
          f"stimulus={args.samples}x2x{args.n} repeats={args.repeats} (median after warm-up, interleaved)")
    with tempfile.TemporaryDirectory() as tmp:
        model, bridge = build(args.layers, args.width, args.heads, 4 * args.n, Path(tmp))
        probe = InductionProbe(n=args.n, n_samples=args.samples, ks=(1,))
        x = probe.stimulus(1003)
        strings = [" ".join(f"t{i}" for i in row.tolist()) for row in x]
        rows = [("induction (run_with_cache)", lambda: ours_induction(model, probe), lambda: tl_induction(bridge, x, args.n)),
                ("detect_head (stock)", lambda: ours_detect(model, bridge, strings), lambda: tl_detect(bridge, strings))]
        summary = []
        print(f"{'row':30s} {'ours s':>9s} {'peer s':>9s} {'ratio':>8s} {'max abs diff':>13s}")
        for name, ours, peer in rows:
            t_o, t_p, out_o, out_p = interleaved(ours, peer, args.repeats)
            diff = max_diff(out_o, out_p)
            ratio = f"{t_p / t_o:7.2f}x" if diff <= AGREE else "disagree"
            print(f"{name:30s} {t_o:9.3f} {t_p:9.3f} {ratio:>8s} {diff:13.2e}", flush=True)
            summary.append(f"{name.split()[0]}={t_p / t_o:.2f}x" if diff <= AGREE else f"{name.split()[0]}=disagree")
    print("peers: " + " ".join(summary))


if __name__ == "__main__":
    main()
