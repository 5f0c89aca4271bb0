"""The first-GPU check: one script, at most ~8 minutes on one GPU, that measures and writes one JSON.

    python -m tests.benchmarks.gpu_check --output gpu_check.json      # on a GPU machine, from the repo root
    python -m tests.benchmarks.gpu_check --smoke --output smoke.json  # every code path, tiny, on CPU (a test)

Sections (each guarded by the time budget; a section that fails records its error and the others still run):
- ``train_eager`` / ``train_compiled``: ``LanguageModel`` at the paper shape (configs/pcfg.yaml: Llama 16 × 256,
  4 heads, MLP 1024, context 512) trained by a Lightning ``Trainer`` with ``bf16-mixed``, without and with
  ``compile``; tokens/s over the steps after warm-up (compilation excluded) and MFU = FLOPs/token × tokens/s /
  peak, the peak looked up from the detected device name in ``PEAK_BF16`` (dense bf16 tensor-core FLOP/s).
- ``probes``: the paper's probe suite (callbacks/paper.yaml settings) at the paper shape on 100 × 512 random
  held-out tokens, seconds per probe in float32 and in a bfloat16 copy, and the max abs difference.
- ``probe_olmo``: two OLMo-1B-sized random-weight checkpoints saved locally, loaded (bf16 on GPU) and probed
  with the callbacks/olmo.yaml probes: load and probe seconds and peak device memory per checkpoint.
- ``ddp_one_gpu``: two DDP processes cannot share one GPU under NCCL (it refuses duplicate devices), so this
  section is recorded as skipped with that reason; the CPU DDP path is tests/test_ddp_fit.py.
``--smoke`` runs the same code with tiny shapes on CPU (MFU is null there: no peak FLOPs for a CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from hierlatent.io import atomic_write_text
from tests.benchmarks.bench_probes import numbers

#: dense bf16 FLOP/s (no sparsity) by a substring of ``torch.cuda.get_device_name`` (first match wins)
PEAK_BF16 = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("B200", 2250e12),
             ("A100", 312e12), ("A10G", 70e12), ("A10", 125e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
             ("RTX 4090", 165e12), ("RTX A6000", 155e12), ("V100", 125e12), ("T4", 65e12)]
PAPER = dict(n_layers=16, d_model=256, n_heads=4, d_mlp=1024, context_window=512, vocab_size=1003)
TINY = dict(n_layers=3, d_model=32, n_heads=4, d_mlp=64, context_window=64, vocab_size=1003)


def device_info(device: torch.device) -> dict:
    """Device type, name, torch version and the bf16 peak FLOP/s from the table (None if unknown or CPU)."""
    info = {"type": device.type, "torch": torch.__version__, "name": "cpu", "peak_bf16_flops": None}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        info.update(name=name, memory_gib=torch.cuda.get_device_properties(device).total_memory / 2**30,
                    peak_bf16_flops=next((f for key, f in PEAK_BF16 if key in name), None))
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _StepClock:
    """Lightning callback: wall time of every training batch end (after a device sync)."""

    def __new__(cls, device: torch.device):
        import lightning as L

        class Clock(L.Callback):
            def __init__(self) -> None:
                self.times: list[float] = []

            def on_train_batch_end(self, *args, **kwargs) -> None:
                sync(device)
                self.times.append(time.perf_counter())

        return Clock()


def train(device: torch.device, shape: dict, compile: bool, batch: int, steps: int, warmup: int, peak) -> dict:
    """bf16-mixed Lightning training of ``LanguageModel``: tokens/s after ``warmup`` steps and MFU."""
    import lightning as L

    from hierlatent.module import LanguageModel

    torch.manual_seed(0)
    module = LanguageModel(**shape, compile=compile, lr=1e-4)
    data = torch.randint(0, shape["vocab_size"] - 3, (batch * steps, shape["context_window"]))
    loader = torch.utils.data.DataLoader([{"input_ids": row} for row in data], batch_size=batch)
    clock = _StepClock(device)
    trainer = L.Trainer(accelerator=device.type, devices=1, precision="bf16-mixed", max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[clock], log_every_n_steps=max(1, steps))
    trainer.fit(module, loader)
    timed = clock.times[warmup:]
    tps = batch * shape["context_window"] * (len(timed) - 1) / (timed[-1] - timed[0])
    return {"batch": batch, "steps_timed": len(timed) - 1, "tokens_per_s": tps,
            "flops_per_token": module.flops_per_token,
            "mfu": module.flops_per_token * tps / peak if peak else None,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def paper_probes(smoke: bool) -> list:
    """The probes of callbacks/paper.yaml with its settings (tiny stimuli with ``smoke``)."""
    from hierlatent.probes.function_vectors import FunctionVectorProbe
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.icl import ICLProbe
    from hierlatent.probes.induction import InductionProbe
    from hierlatent.probes.syntax import SyntaxProbe

    if smoke:
        return [InductionProbe(n=16, n_samples=4, ks=(1, 2)), ICLProbe(n_windows=4), HydraProbe(ks=(1, 2), n_heldout=4),
                FunctionVectorProbe(n_pairs=4, n_icl_prompts=4, n_shots=3, n_top_heads=2), SyntaxProbe(n_samples=8)]
    return [InductionProbe(n=64, n_samples=20, ks=tuple(range(1, 11))), ICLProbe(n_windows=100),
            HydraProbe(ks=(1, 2), n_heldout=100), FunctionVectorProbe(n_pairs=16), SyntaxProbe(n_samples=100)]


def probes(device: torch.device, shape: dict, smoke: bool) -> dict:
    """The paper's suite in float32 and in a bfloat16 copy: seconds per probe and max abs difference."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=shape["n_layers"], hidden_size=shape["d_model"],
                      num_attention_heads=shape["n_heads"], num_key_value_heads=shape["n_heads"],
                      intermediate_size=shape["d_mlp"], vocab_size=shape["vocab_size"],
                      max_position_embeddings=shape["context_window"])
    m32 = LlamaForCausalLM(cfg).to(device).eval()
    m16 = copy.deepcopy(m32).to(torch.bfloat16)
    n, T = (4, 64) if smoke else (100, 512)
    heldout = torch.randint(0, 1000, (n, T), generator=torch.Generator().manual_seed(0)).to(device)
    rows, worst = {}, 0.0
    for probe in paper_probes(smoke):
        row = {}
        for label, model in (("fp32", m32), ("bf16", m16)):
            sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                row[label] = numbers(probe.run(model, heldout))
            sync(device)
            row[f"{label}_s"] = time.perf_counter() - t0
        diffs = [abs(a - b) for a, b in zip(row["fp32"], row["bf16"]) if not (math.isnan(a) or math.isnan(b))]
        name = type(probe).__name__
        rows[name] = {"fp32_s": row["fp32_s"], "bf16_s": row["bf16_s"], "max_abs_diff": max(diffs, default=0.0),
                      "max_abs_value": max((abs(a) for a in row["fp32"] if not math.isnan(a)), default=0.0)}
        worst = max(worst, rows[name]["max_abs_diff"])
    return {"per_probe": rows, "max_abs_diff_bf16_fp32": worst, "heldout": [n, T],
            "suite_fp32_s": sum(r["fp32_s"] for r in rows.values()),
            "suite_bf16_s": sum(r["bf16_s"] for r in rows.values())}


def probe_olmo(device: torch.device, smoke: bool) -> dict:
    """Two random OLMo checkpoints (OLMo-1B's config unless smoke) saved, loaded and probed (olmo.yaml probes)."""
    from transformers import OlmoConfig, OlmoForCausalLM

    from hierlatent.callbacks.probes import ProbeRunner
    from hierlatent.olmo.frozen import FrozenCausalLM
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.induction import InductionProbe

    size = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, vocab_size=2048)
            if smoke else dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=16,
                               vocab_size=50304))
    cfg = OlmoConfig(**size, max_position_embeddings=2048)
    runner = ProbeRunner([InductionProbe(n=64, n_samples=20, ks=tuple(range(1, 11)), aggregate="per_sample_max",
                                         batch_size=20),
                          HydraProbe(ks=(1, 2), n_random=2 if smoke else 10, random_len=256 if smoke else 2048,
                                     batch_size=5)], log_images=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            path = Path(tmp) / f"step{(i + 1) * 1000}-tokens{(i + 1) * 4}B"
            torch.manual_seed(i)
            t0 = time.perf_counter()
            with torch.device(device):  # a 1.2B-parameter init on the GPU, not on the host CPU
                OlmoForCausalLM(cfg).to(torch.bfloat16 if device.type == "cuda" else torch.float32).save_pretrained(path)
            save_s = time.perf_counter() - t0
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            module = FrozenCausalLM(path, device=device, dtype="auto")
            sync(device)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            runner.probe_model(module.model, step=0)
            sync(device)
            rows.append({"revision": path.name, "save_s": save_s, "load_s": load_s, "probe_s": time.perf_counter() - t0,
                         "dtype": str(next(module.model.parameters()).dtype),
                         "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
                         if device.type == "cuda" else None})
            del module
    params = sum(p.numel() for p in OlmoForCausalLM(cfg).parameters()) if smoke else None
    return {"config": size, "checkpoints": rows, "params": params}


def section(report: dict, key: str, fn: Callable[[], dict], t_start: float, budget_s: float) -> None:
    """Run one section into ``report[key]`` unless the budget is spent; errors are recorded, not raised."""
    if time.perf_counter() - t_start > budget_s:
        report[key] = {"status": f"skipped: time budget of {budget_s:.0f} s spent"}
        return
    t0 = time.perf_counter()
    try:
        report[key] = {"status": "ok", **fn()}
    except Exception as exc:  # a failing section must not hide the others: record it whole
        report[key] = {"status": f"error: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    report[key]["wall_s"] = time.perf_counter() - t0
    print(f"{key}: {report[key]['status']} ({report[key]['wall_s']:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run every section, write the JSON atomically, return the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: every code path, seconds")
    p.add_argument("--output", type=Path, default=Path("gpu_check.json"), help="where the JSON goes")
    p.add_argument("--budget-s", type=float, default=420.0, help="no section starts after this many seconds")
    p.add_argument("--batch", type=int, default=64, help="training windows per step at the paper shape")
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    shape = TINY if args.smoke else PAPER
    batch, steps, warmup = (4, 4, 1) if args.smoke else (args.batch, 40, 10)
    t_start = time.perf_counter()
    report: dict = {"smoke": args.smoke, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "device": device_info(device), "shape": shape, "threads": torch.get_num_threads()}
    peak = report["device"]["peak_bf16_flops"]
    section(report, "train_eager", lambda: train(device, shape, False, batch, steps, warmup, peak), t_start, args.budget_s)
    section(report, "train_compiled", lambda: train(device, shape, True, batch, steps, warmup, peak), t_start,
            args.budget_s)
    section(report, "probes", lambda: probes(device, shape, args.smoke), t_start, args.budget_s)
    section(report, "probe_olmo", lambda: probe_olmo(device, args.smoke), t_start, args.budget_s)
    report["ddp_one_gpu"] = {"status": "skipped: NCCL refuses two ranks on one GPU (duplicate device); "
                                       "CPU DDP is tests/test_ddp_fit.py"}
    report["total_s"] = time.perf_counter() - t_start
    atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output} ({report['total_s']:.1f} s)")
    return report


if __name__ == "__main__":
    main()
