"""The on-disk corpus store: parallel, resumable, atomic generation and a memmap reader.

Layout of ``<HIERLATENT_CACHE>/corpora/<name>-<config hash>/``::

    meta.json                   written last: its presence marks a finished corpus (checksums of all shards)
    test/shard-00000.bin        raw little-endian token ids (dtype in meta.json), one document boundary at each start
    test/shard-00000.bin.json   sidecar written after the shard: its token count and CRC-32 (``integrity``)
    train/shard-00000.bin  ...
    tokenizer/             HF tokenizer (AutoTokenizer.from_pretrained)

Shards are pure functions of (config, split, index), so any number of worker processes writes the same
bytes; each worker writes its own shards atomically, so a killed run resumes by keeping finished shards
(those whose sidecar checksum matches their bytes). Workers die with the building process (``_proc``).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from hierlatent import __version__
from hierlatent._proc import worker_init
from hierlatent.corpora.base import CorpusGenerator
from hierlatent.corpora.integrity import (FORMAT, META, crc32_bytes, read_meta, read_sidecar, shard_path,
                                          shard_problem, write_sidecar)
from hierlatent.errors import CorpusError
from hierlatent.io import atomic_write_bytes, atomic_write_json, cache_root, check_writable

__all__ = ["FORMAT", "META", "Corpus", "build_corpus", "corpus_dir", "open_corpus", "shard_path"]


def corpus_dir(generator: CorpusGenerator) -> Path:
    """Where ``generator``'s corpus lives: ``cache_root()/corpora/<name>-<hash>``."""
    return cache_root() / "corpora" / generator.cache_name()


class Corpus:
    """A finished corpus on disk (read-only)."""

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.vocab_size: int = meta["vocab_size"]
        self.dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        self.special: dict[str, int] = meta["special_tokens"]
        self.reference_losses: dict[str, float] = meta["reference_losses"]
        self.tokenizer_dir = self.path / "tokenizer"

    def shard_paths(self, split: str) -> list[Path]:
        return [shard_path(self.path, split, i) for i in range(self.meta["n_shards"][split])]

    def n_tokens(self, split: str) -> int:
        return int(self.meta["n_tokens"][split])

    def memmaps(self, split: str) -> list[np.memmap]:
        """One read-only memmap per shard, in order (empty shards are skipped: mmap cannot map 0 bytes)."""
        return [np.memmap(p, dtype=self.dtype, mode="r") for p in self.shard_paths(split) if p.stat().st_size]

    def __repr__(self) -> str:
        return f"Corpus({self.path}, vocab={self.vocab_size}, tokens={self.meta['n_tokens']})"


def open_corpus(path: str | os.PathLike) -> Corpus:
    """Open a finished corpus, checking meta.json and that every shard has the recorded size.

    Checksums are not read here (that would read the whole corpus at every start): ``hierlatent verify``.
    """
    path = Path(path)
    corpus = Corpus(path, read_meta(path))
    for split, sizes in corpus.meta["shard_tokens"].items():
        for shard, n_tokens in zip(corpus.shard_paths(split), sizes):
            problem = shard_problem(shard, n_tokens, corpus.dtype.itemsize, None)
            if problem is not None:
                raise CorpusError(f"{shard}: corpus is damaged ({problem}); run hierlatent verify {path}")
    return corpus


def build_corpus(generator: CorpusGenerator, workers: int = 0, progress: bool = True) -> Corpus:
    """Generate ``generator``'s corpus into the cache (or return the finished one at once).

    Args:
        generator: the corpus recipe.
        workers: generation processes (0 = all cores; 1 = in this process).
        progress: show a progress bar (tokens, tokens/s, ETA) on stderr.
    """
    root = corpus_dir(generator)
    if (root / META).exists():
        return open_corpus(root)
    vocab = generator.vocabulary()
    dtype = vocab.dtype  # ConfigError when the vocabulary does not fit uint32
    counts = generator.shard_counts()
    _check_writable(root)
    _check_disk(root, generator, dtype)
    workers = workers or os.cpu_count() or 1
    expected = sum(generator.expected_tokens(s) for s in generator.split_order)
    start = time.perf_counter()
    with _progress_bar(expected, progress, generator.cache_name()) as bar:
        for split in generator.split_order:
            kept = _finished_shards(root, split, counts[split], dtype)
            todo = [i for i in range(counts[split]) if i not in kept]
            bar.update(sum(n for n, _ in kept.values()))
            _run_shards(generator, root, split, todo, dtype, workers, bar)
    seconds = time.perf_counter() - start
    records = {s: _shard_records(root, s, counts[s]) for s in generator.split_order}
    shard_tokens = {s: [n for n, _ in v] for s, v in records.items()}
    n_tokens = {s: sum(v) for s, v in shard_tokens.items()}
    from hierlatent.corpora.tokenizer import save_tokenizer  # transformers: not needed to open or verify

    save_tokenizer(vocab, root / "tokenizer")
    total = sum(n_tokens.values())
    meta = {
        "format": FORMAT, "name": generator.name, "class_path": generator.class_path(),
        "init_args": generator.hparams(), "seed": generator.seed, "hierlatent_version": __version__,
        "dtype": {"<u2": "uint16", "<u4": "uint32"}[dtype.str], "vocab_size": vocab.size,
        "special_tokens": dict(vocab.special), "n_tokens": n_tokens, "n_shards": counts,
        "shard_tokens": shard_tokens, "shard_crc32": {s: [c for _, c in v] for s, v in records.items()},
        "reference_losses": generator.reference_losses(),
        "generation": {"seconds": round(seconds, 3), "tokens_per_second": total / max(seconds, 1e-9),
                       "workers": workers, "tokens": total},
    }
    atomic_write_json(root / META, meta)
    return open_corpus(root)


# -- generation -------------------------------------------------------------------------------------
def _write_shard(generator: CorpusGenerator, root: Path, split: str, index: int, dtype: str, context: Any) -> int:
    """Generate and atomically write one shard, then its sidecar; returns its token count.

    Args:
        generator: the corpus recipe.
        root: the corpus directory.
        split: the split the shard belongs to.
        index: the shard's number in the split.
        dtype: the shards' numpy dtype string.
        context: ``generator.prepare_context(root, split)``, built once per split.
    """
    tokens = np.ascontiguousarray(generator.generate_shard(split, index, context), dtype=dtype)
    data = memoryview(tokens).cast("B")
    path = shard_path(root, split, index)
    atomic_write_bytes(path, data)
    write_sidecar(path, tokens.size, crc32_bytes(data))
    return int(tokens.size)


#: the split's context in a generation worker process, set once by the pool initializer ``_start_worker``
#: (a task argument would pickle it again for every shard; the PCFG test-sentence table is ~50 MB)
_worker_context: Any = None


def _start_worker(parent_pid: int, context: Any) -> None:
    """Pool initializer: die with the building process and keep the split's context for every task."""
    global _worker_context
    worker_init(parent_pid)
    _worker_context = context


def _write_shard_in_worker(generator: CorpusGenerator, root: Path, split: str, index: int, dtype: str) -> int:
    """``_write_shard`` with the context ``_start_worker`` received (runs in a worker process)."""
    return _write_shard(generator, root, split, index, dtype, _worker_context)


def _run_shards(generator, root, split, todo, dtype, workers, bar) -> None:
    if not todo:
        return
    context = generator.prepare_context(root, split)  # once per split, here: a failure is raised before any worker
    if workers == 1 or len(todo) == 1:
        for i in todo:
            bar.update(_write_shard(generator, root, split, i, dtype.str, context))
        return
    ctx = multiprocessing.get_context("spawn")  # numba and torch state are not fork-safe
    # workers die with this process (a killed build leaves no orphans writing shards); see hierlatent._proc
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_start_worker,
                               initargs=(os.getpid(), context))
    with pool:
        # under ``python -m hierlatent`` (sweeps) or the console script the workers import no torch for their
        # main module: multiprocessing skips a ``*.__main__`` one, and the script's file imports only commands
        pending = {pool.submit(_write_shard_in_worker, generator, root, split, i, dtype.str) for i in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                if fut.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise fut.exception()
                bar.update(fut.result())


def _shard_tokens(root: Path, split: str, n_shards: int, dtype: np.dtype) -> list[int]:
    """Token count of each finished shard of a split (0 where not yet written)."""
    paths = (shard_path(root, split, i) for i in range(n_shards))
    return [p.stat().st_size // dtype.itemsize if p.exists() else 0 for p in paths]


def _existing_tokens(root: Path, split: str, n_shards: int, dtype: np.dtype) -> int:
    return sum(_shard_tokens(root, split, n_shards, dtype))


def _finished_shards(root: Path, split: str, n_shards: int, dtype: np.dtype) -> dict[int, tuple[int, str]]:
    """Shards of an interrupted build that can be kept: ``{index: (tokens, crc32)}``.

    A shard is kept only when its sidecar is sound and its size and CRC-32 match it; a shard without one
    (killed between the two writes, or written by a hierlatent that recorded no checksums), truncated or
    altered is generated again.
    """
    kept = {}
    for i in range(n_shards):
        path = shard_path(root, split, i)
        record = read_sidecar(path) if path.exists() else None
        if record is not None and shard_problem(path, record[0], dtype.itemsize, record[1]) is None:
            kept[i] = record
    return kept


def _shard_records(root: Path, split: str, n_shards: int) -> list[tuple[int, str]]:
    """``(tokens, crc32)`` of every shard of a split once all are written (from their sidecars)."""
    records = []
    for i in range(n_shards):
        record = read_sidecar(shard_path(root, split, i))
        if record is None:
            raise CorpusError(f"{shard_path(root, split, i)}.json: shard record missing or malformed after generation")
        records.append(record)
    return records


# -- checks before any long work ---------------------------------------------------------------------
def _check_writable(root: Path) -> None:
    hint = "; set HIERLATENT_CACHE to a writable directory"
    check_writable(root, "cache directory", CorpusError, hint)
    try:
        root.mkdir(parents=True, exist_ok=True)  # _check_disk measures the disk the corpus directory is on
    except OSError as exc:  # what os.access cannot foresee (a full disk, a quota, a race)
        raise CorpusError(f"cache directory: cannot create {root} ({exc.strerror}){hint}") from exc


def _check_disk(root: Path, generator: CorpusGenerator, dtype: np.dtype) -> None:
    counts = generator.shard_counts()
    needed = sum(generator.expected_tokens(s) for s in generator.split_order) * dtype.itemsize
    needed -= sum(_existing_tokens(root, s, counts[s], dtype) for s in generator.split_order) * dtype.itemsize
    free = shutil.disk_usage(root).free
    if needed > free:
        raise CorpusError(
            f"not enough disk space in {root}: the corpus needs {needed / 1e9:.2f} GB, {free / 1e9:.2f} GB free "
            "(set HIERLATENT_CACHE to a larger disk)"
        )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress_bar(total: int, enabled: bool, name: str):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # Lightning's own progress-bar library

    return tqdm(total=total, unit="tok", unit_scale=True, desc=f"generating {name}", smoothing=0.1)
