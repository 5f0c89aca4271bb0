"""Benchmark of ``hierlatent probe-olmo``: per-checkpoint load and probe seconds, 1 vs 2 processes.

Run (from the repository root):  python -m tests.benchmarks.bench_probe_olmo [--checkpoints 8] [--hidden 128] [--layers 4]

Builds small random OLMo checkpoints in a temp dir, then
1. in-process: load seconds and probe seconds per checkpoint (real induction + Hydra probes), and the probe
   seconds with half of every probe's stimuli -- what one of 2 ranks would do under a stimulus-level split;
2. the real CLI (``--trainer.devices 1`` vs ``2 --trainer.strategy ddp``, CPU/gloo) over all checkpoints.
It prints the checkpoint-level split's cost per checkpoint and rank, (load + probe) / 2, next to the
stimulus-level split's, load + probe/2 (every rank loads every checkpoint): loading is not divisible.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROBES_YAML = """trainer:
  callbacks:
    - class_path: hierlatent.callbacks.probes.ProbeRunner
      init_args:
        n_heldout: 0
        log_images: false
        probes:
          - class_path: hierlatent.probes.induction.InductionProbe
            init_args: {{n: 64, n_samples: {samples}, aggregate: per_sample_max}}
          - class_path: hierlatent.probes.hydra.HydraProbe
            init_args: {{ks: [1, 2], n_random: {random}, random_len: 256, batch_size: 4}}
"""


def build(root: Path, n: int, hidden: int, layers: int) -> None:
    """``n`` random OLMo checkpoints named like the hub's revisions."""
    from transformers import OlmoConfig, OlmoForCausalLM

    cfg = OlmoConfig(vocab_size=2048, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                     num_attention_heads=4, max_position_embeddings=256)
    for i in range(n):
        torch.manual_seed(i)
        OlmoForCausalLM(cfg).save_pretrained(root / f"step{(i + 1) * 1000}-tokens{(i + 1) * 4}B")


def runner(samples: int, random: int):
    """The benchmark's ProbeRunner (the same settings as PROBES_YAML)."""
    from hierlatent.callbacks.probes import ProbeRunner
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.induction import InductionProbe

    return ProbeRunner([InductionProbe(n=64, n_samples=samples, aggregate="per_sample_max"),
                        HydraProbe(ks=[1, 2], n_random=random, random_len=256, batch_size=4)], log_images=False)


def in_process(root: Path, samples: int, random: int) -> tuple[list[float], list[float], list[float]]:
    """Load seconds, full probe seconds and half-stimulus probe seconds per checkpoint."""
    from hierlatent.olmo.frozen import FrozenCausalLM

    full, half = runner(samples, random), runner(max(1, samples // 2), max(1, random // 2))
    loads, probes, halves = [], [], []
    for d in sorted(root.iterdir()):
        t0 = time.perf_counter()
        module = FrozenCausalLM(d, dtype="float32")
        loads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full.probe_model(module.model, step=0)
        probes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        half.probe_model(module.model, step=0)
        halves.append(time.perf_counter() - t0)
        del module
    return loads, probes, halves


def cli(root: Path, out: Path, config: Path, devices: int) -> float:
    """Wall seconds of the real ``hierlatent probe-olmo`` over all checkpoints."""
    cmd = ["hierlatent", "probe-olmo", "--config", str(config), "--checkpoints", str(root), "--output_dir", str(out),
           "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.logger", "false"]
    if devices > 1:
        cmd += ["--trainer.strategy", "ddp"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"probe-olmo failed ({devices} processes):\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    """Build, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=8, help="number of revisions")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size of the random OLMo models")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--samples", type=int, default=20, help="induction samples (paper: 20)")
    parser.add_argument("--random", type=int, default=10, help="Hydra random sequences (OLMo: 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, tmp = Path(tmp) / "ck", Path(tmp)
        build(root, args.checkpoints, args.hidden, args.layers)
        size = sum(f.stat().st_size for f in root.rglob("*.safetensors")) / args.checkpoints / 2**20
        loads, probes, halves = in_process(root, args.samples, args.random)
        config = tmp / "probes.yaml"
        config.write_text(PROBES_YAML.format(samples=args.samples, random=args.random))
        wall1 = cli(root, tmp / "one", config, 1)
        wall2 = cli(root, tmp / "two", config, 2)
        same = all(
            {k: v for k, v in json.loads(p.read_text()).items() if k != "probe_seconds"}
            == {k: v for k, v in json.loads((tmp / "two" / p.parent.name / "probes.json").read_text()).items()
                if k != "probe_seconds"}
            for p in (tmp / "one").glob("*/probes.json"))
    load, probe, half = statistics.median(loads), statistics.median(probes), statistics.median(halves)
    print(f"probe-olmo benchmark: {args.checkpoints} random OLMo checkpoints, {size:.1f} MiB each, "
          f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}")
    print(f"  per checkpoint (median): load {load:.3f} s | probe {probe:.3f} s | probe, half the stimuli {half:.3f} s")
    print(f"  2 ranks, cost per checkpoint: checkpoint-level (load+probe)/2 = {(load + probe) / 2:.3f} s | "
          f"stimulus-level load + probe/2 = {load + half:.3f} s")
    print(f"  CLI wall: 1 process {wall1:.1f} s | 2 processes (ddp, gloo) {wall2:.1f} s | "
          f"speed-up {wall1 / wall2:.2f}x | results identical: {same}")


if __name__ == "__main__":
    main()
