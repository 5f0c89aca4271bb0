"""Step time of ``LanguageModel`` under Lightning's fit loop vs a plain PyTorch loop: same model, batch and data.

Prints ms/step of both and the overhead of the Lightning path (target <= 5%). Both use the same
``CorpusDataModule`` loader, AdamW and linear schedule; the Lightning run also does everything a real run
does except checkpoints (TensorBoard logging every ``--log_every`` steps with grad norm and throughput).
Runs alternate (plain, lightning, plain, ...) and the medians of per-step times are compared, which
cancels slow drifts of a shared machine.

Usage (from the repository root): python -m tests.benchmarks.bench_fit_overhead [--steps 40] [--d_model 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning as L
import numpy as np
import torch

from hierlatent.corpora.base import CorpusGenerator, Vocabulary, tail_vocabulary
from hierlatent.data import CorpusDataModule, TokenWindows
from hierlatent.module import LanguageModel
from hierlatent.trainer import ResumableTensorBoardLogger


class _Uniform(CorpusGenerator):
    """Uniform random tokens (benchmark data only)."""

    name = "bench-uniform"

    def vocabulary(self) -> Vocabulary:
        return tail_vocabulary([f"t{i}" for i in range(1000)])

    def shard_counts(self) -> dict[str, int]:
        return {"train": 1, "test": 1}

    def generate_shard(self, split: str, index: int, context: object = None) -> np.ndarray:
        return np.random.default_rng(index).integers(0, 1000, 2_000_000, dtype=np.uint16)

    def expected_tokens(self, split: str) -> int:
        return 2_000_000

    def reference_losses(self) -> dict[str, float]:
        return {}


def make_dm(T: int, batch: int) -> CorpusDataModule:
    gen = _Uniform()
    dm = CorpusDataModule(gen, context_window=T, batch_size=batch)
    arr = gen.generate_shard("train", 0)
    dm.attach(TokenWindows.from_arrays([arr], T), TokenWindows.from_arrays([arr[:100_000]], T))
    return dm


class _StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self.times.append(time.perf_counter())


def lightning_steps(args: argparse.Namespace, model_kwargs: dict) -> list[float]:
    torch.manual_seed(0)
    dm = make_dm(args.context, args.batch)
    model = LanguageModel(vocab_size=dm.vocab_size, **model_kwargs)
    timer = _StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            max_steps=args.warmup + args.steps, accelerator=args.device, devices=1, precision=args.precision,
            logger=ResumableTensorBoardLogger(save_dir=tmp, name="b", version="v"), log_every_n_steps=args.log_every,
            callbacks=[timer], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0,
        )
        trainer.fit(model, dm)
    if args.device == "cuda":
        torch.cuda.synchronize()
    stamps = timer.times[args.warmup:] + [time.perf_counter()]
    return [b - a for a, b in zip(stamps, stamps[1:])]


def plain_steps(args: argparse.Namespace, model_kwargs: dict) -> list[float]:
    torch.manual_seed(0)
    dm = make_dm(args.context, args.batch)
    module = LanguageModel(vocab_size=dm.vocab_size, **model_kwargs)
    device = torch.device(args.device)
    model = module.model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=module.hparams.lr, fused=device.type == "cuda" or None)
    total = args.warmup + args.steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / total)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    stamps = []
    for step, batch in enumerate(dm.train_dataloader()):
        if step == total:
            break
        stamps.append(time.perf_counter())
        ids = batch["input_ids"].to(device, non_blocking=True)
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % args.log_every == 0:
            loss.item()  # the plain loop also reads the loss at its logging steps
    if args.device == "cuda":
        torch.cuda.synchronize()
    stamps = stamps[args.warmup:] + [time.perf_counter()]
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d_model", type=int, default=128)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--log_every", type=int, default=10)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default=None)
    args = p.parse_args()
    args.precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    model_kwargs = dict(n_layers=args.layers, d_model=args.d_model, n_heads=4, d_mlp=4 * args.d_model,
                        context_window=args.context)
    plain, light = [], []
    for _ in range(args.rounds):
        plain += plain_steps(args, model_kwargs)
        light += lightning_steps(args, model_kwargs)
    mp, ml = statistics.median(plain), statistics.median(light)
    tokens = args.batch * args.context
    print(f"model {args.layers}x{args.d_model}, batch {args.batch}x{args.context}, {args.device} {args.precision},"
          f" {args.rounds}x{args.steps} timed steps each")
    print(f"{'loop':<12}{'ms/step (median)':>18}{'ms/step (mean)':>16}{'tokens/s':>12}")
    for name, xs, m in (("plain torch", plain, mp), ("lightning", light, ml)):
        print(f"{name:<12}{1e3 * m:>18.2f}{1e3 * statistics.mean(xs):>16.2f}{tokens / m:>12.0f}")
    print(f"Lightning overhead: {100 * (ml / mp - 1):+.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
