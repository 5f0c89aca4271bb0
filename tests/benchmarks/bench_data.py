"""Train-dataloader throughput: ``CorpusDataModule`` with 0 and 2 workers next to a plain numpy memmap loop.

Writes a synthetic token corpus (uint16 shard files) to a temp directory, then reads the same windows
(same seeded order, same offsets) three ways and prints batches/s, tokens/s and the ratio to the plain loop:

    python -m tests.benchmarks.bench_data [--tokens 50000000] [--context-window 512] [--batch-size 8] [--batches 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hierlatent.corpora.base import CorpusGenerator, Vocabulary
from hierlatent.data import CorpusDataModule, TokenWindows, TrainWindowSampler


class _Vocab1003(CorpusGenerator):
    """Stand-in recipe with the PCFG corpus's vocabulary (the benchmark attaches its own shard files)."""

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(tuple(f"t{i}" for i in range(1003)), {"eos": 1000, "unk": 1001, "pad": 1002})

    def shard_counts(self) -> dict[str, int]:
        return {"train": 1, "test": 1}

    def generate_shard(self, split: str, index: int, context: object = None) -> np.ndarray:
        raise NotImplementedError("the benchmark attaches shard files directly")

    def expected_tokens(self, split: str) -> int:
        return 0

    def reference_losses(self) -> dict[str, float]:
        return {}


def write_shards(root: Path, n_tokens: int, n_shards: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths, per = [], n_tokens // n_shards
    for i in range(n_shards):
        paths.append(root / f"shard-{i:05d}.bin")
        rng.integers(0, 1001, per, dtype=np.uint16).tofile(paths[-1])
    return paths


def time_loader(loader, n_batches: int) -> float:
    it = iter(loader)
    next(it)  # exclude worker start-up
    t0 = time.perf_counter()
    for _ in range(n_batches):
        batch = next(it)
    assert batch["input_ids"].dtype == torch.long
    return time.perf_counter() - t0


def time_numpy(paths: list[Path], offsets: np.ndarray, T: int, B: int, n_batches: int) -> float:
    """The baseline: one memmap over the concatenated-by-index shards, fancy slicing, torch conversion."""
    mms = [np.memmap(p, dtype=np.uint16, mode="r") for p in paths]
    bounds = np.concatenate([[0], np.cumsum([len(m) for m in mms])])
    t0 = time.perf_counter()
    for b in range(1, n_batches + 1):
        rows = []
        for off in offsets[b * B : (b + 1) * B]:
            s = np.searchsorted(bounds, off, side="right") - 1
            local = off - bounds[s]
            row = mms[s][local : local + T]
            if len(row) < T:
                row = np.concatenate([row, mms[s + 1][: T - len(row)]])
            rows.append(row)
        torch.from_numpy(np.stack(rows).astype(np.int64))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=50_000_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--context-window", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=2000)
    args = ap.parse_args()
    T, B, n = args.context_window, args.batch_size, args.batches
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_shards(Path(tmp), args.tokens, args.shards)
        sampler = TrainWindowSampler(args.tokens // args.shards * args.shards, T, B, seed=0)
        offsets = np.fromiter(iter(sampler), dtype=np.int64, count=(n + 1) * B)
        t0 = time.perf_counter()
        list(TrainWindowSampler(args.tokens, T, B, seed=0))
        sampler_s = time.perf_counter() - t0
        results = {"numpy memmap loop": time_numpy(paths, offsets, T, B, n)}
        for workers in (0, 2):
            dm = CorpusDataModule(_Vocab1003(), context_window=T, batch_size=B, num_workers=workers, seed=0)
            windows = TokenWindows.from_files(paths, np.uint16, T)
            dm.attach(windows, windows)
            results[f"CorpusDataModule workers={workers}"] = time_loader(dm.train_dataloader(), n)
    base = results["numpy memmap loop"]
    print(f"{args.tokens:,} tokens, {args.shards} shards, T={T}, B={B}, {n} batches (seeded contiguous order)")
    print(f"sampler: one full epoch of {args.tokens // T:,} window offsets in {sampler_s:.3f}s")
    print(f"{'reader':<34}{'batches/s':>12}{'tokens/s':>16}{'vs numpy':>10}")
    for name, secs in results.items():
        print(f"{name:<34}{n / secs:>12,.0f}{n * B * T / secs:>16,.0f}{base / secs:>9.2f}x")


if __name__ == "__main__":
    main()
