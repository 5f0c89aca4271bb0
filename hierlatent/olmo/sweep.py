"""``hierlatent probe-olmo``: run the configured ``ProbeRunner``(s) over a series of checkpoints.

Distribution is checkpoint-level: under DDP with N processes each rank probes its own revisions
(round-robin in step order; one model in memory at a time) and rank 0 merges the manifest after a
gather. Checkpoint-level beats a stimulus-level split (every rank loading every checkpoint and probing a
slice of the stimuli) because loading is a large, unshardable part of the per-checkpoint cost (see
tests/benchmarks/bench_probe_olmo.py) and because probes stay unchanged single-device code. Processes
are started by the trainer's own strategy launcher, as Lightning's entry points do.

Phases (all ranks take part in every collective): 1. weights hashes, split across ranks, gathered;
duplicates (same hash as an earlier revision in step order) are marked, not probed. 2. probing, split
across ranks; each rank writes ``<output_dir>/<revision>/probes.json`` itself. 3. rank 0 merges the
manifest and rebuilds ``<output_dir>/tensorboard/`` from all probes.json files in step order.
"""

from __future__ import annotations

import gc
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.errors import ConfigError, HierlatentError
from hierlatent.olmo.checkpoints import CheckpointRef, discover, download, hub_weights_hash, weights_hash
from hierlatent.olmo.frozen import FrozenCausalLM
from hierlatent.olmo.heldout import check_heldout, heldout_source, heldout_windows
from hierlatent.olmo.manifest import read_manifest, write_manifest
from hierlatent.olmo.report import is_complete, rebuild_tensorboard


def probe_olmo(
    self: Trainer,
    checkpoints: str | list[str],
    output_dir: Path,
    revisions: str | list[str] = "all",
    cache_dir: Path | None = None,
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
    heldout: Path | None = None,
) -> dict[str, Any] | None:
    """Probe every checkpoint of a series (e.g. all OLMo-1B revisions) with the trainer's ProbeRunner callbacks.

    Args:
        checkpoints: A directory of revision directories, a list of directories, a fit run's hf/ directory, or a hub repo id (e.g. allenai/OLMo-1B-hf).
        output_dir: Where <revision>/probes.json, manifest.json and tensorboard/ are written.
        revisions: Selection: all, every:k, steps:a-b, or revision names (comma-separated or a list).
        cache_dir: Hub download cache (default: the huggingface_hub default).
        dtype: Parameter dtype of the loaded checkpoints (auto: bf16 on GPU, float32 on CPU).
        heldout: A hierlatent corpus directory whose test split gives held-out windows (default: the corpus a fit export records in hierlatent.json; none: random tokens).

    Returns:
        The manifest written by rank 0 (None on other ranks).
    """
    trainer = self
    runners = [cb for cb in trainer.callbacks if isinstance(cb, ProbeRunner)]
    if not runners:
        raise ConfigError("--trainer.callbacks: probe-olmo needs a ProbeRunner (e.g. --config callbacks/olmo.yaml)")
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ConfigError(f"--output_dir: {output_dir} exists and is not a directory")
    refs = discover(checkpoints, revisions)  # errors surface here, before any process is started
    check_heldout([p for r in runners for p in r.probes], [Path(r.path) if r.path else None for r in refs], heldout)
    sources = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    args = (trainer, runners, refs, Path(output_dir), cache_dir, dtype, [str(s) for s in sources], heldout)
    launcher = trainer.strategy.launcher
    if launcher is None:
        return _sweep(*args)
    # trainer=None: the launcher must not try to ship a fitted LightningModule's state back from rank 0
    return launcher.launch(_sweep, *args, trainer=None)


def _gather(obj: Any, distributed: bool) -> list[Any]:
    if not distributed:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _sweep(trainer: Trainer, runners: list[ProbeRunner], refs: list[CheckpointRef], output_dir: Path,
           cache_dir: Path | None, dtype: str, sources: list[str], heldout: Path | None) -> dict[str, Any] | None:
    trainer.strategy.setup_environment()  # process group + device, as Lightning's own entry points do
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if distributed:  # every rank works from rank 0's listing (a hub listing could change in between)
        box = [refs]
        dist.broadcast_object_list(box, src=0)
        refs = box[0]
    device = trainer.strategy.root_device
    old = read_manifest(output_dir)
    names = [r.name for runner in runners for r in runner.probes]
    complete = {r.revision for r in refs if is_complete(output_dir / r.revision / "probes.json", names)}

    # phase 1: weights hashes (reuse the earlier run's hash for completed revisions)
    mine = {}
    for i, ref in enumerate(refs):
        if i % world == rank:
            mine[ref.revision] = _hash(ref, old.get(ref.revision), ref.revision in complete, cache_dir)
    hashes = {k: v for part in _gather(mine, distributed) for k, v in part.items()}

    entries: dict[str, dict[str, Any]] = {}
    first_of: dict[str, str] = {}
    todo = []
    for ref in refs:  # step order: the earliest revision with given weights is the one probed
        digest, err = hashes[ref.revision]
        entry = {**ref.to_dict(), "weights_sha256": digest, "status": "failed", "duplicate_of": None,
                 "seconds_load": None, "seconds_probe": None, "error": err, "rank": None}
        entry.pop("path")
        if digest is not None and digest in first_of:
            entry.update(status="duplicate", duplicate_of=first_of[digest])
        elif digest is not None:
            first_of[digest] = ref.revision
            if ref.revision in complete:
                prev = old.get(ref.revision, {})
                entry.update({k: prev.get(k) for k in ("seconds_load", "seconds_probe", "rank")}, status="done")
            else:
                todo.append(ref)
        entries[ref.revision] = entry

    # phase 2: probing, one checkpoint in memory at a time
    done_here = {}
    mine = [ref for i, ref in enumerate(todo) if i % world == rank]
    t0 = time.perf_counter()
    for n, ref in enumerate(mine, 1):
        done_here[ref.revision] = _probe_one(ref, runners, output_dir, device, cache_dir, dtype, rank, heldout)
        _progress(rank, n, len(mine), ref.revision, time.perf_counter() - t0)
    for part in _gather(done_here, distributed):
        for rev, update in part.items():
            entries[rev].update(update)

    manifest = None
    if rank == 0:
        manifest = write_manifest(output_dir, entries, sources)
        rebuild_tensorboard(output_dir, runners, [r.revision for r in refs])
    if distributed:
        dist.barrier()
    failed = [e for e in entries.values() if e["status"] == "failed"]
    if failed:
        detail = "; ".join(f"{e['revision']}: {e['error']}" for e in failed[:3])
        more = f"; ... see {output_dir / 'manifest.json'}" if len(failed) > 3 else ""
        raise HierlatentError(f"{len(failed)} of {len(entries)} checkpoints failed: {detail}{more}")
    return manifest


def _hash(ref: CheckpointRef, previous: dict | None, complete: bool,
          cache_dir: Path | None) -> tuple[str | None, str | None]:
    if complete and previous and previous.get("weights_sha256"):
        return previous["weights_sha256"], None
    try:
        if ref.path is not None:
            return weights_hash(Path(ref.path)), None
        digest = hub_weights_hash(ref)
        if digest is None:  # no LFS metadata: hash after downloading
            ref.path = str(download(ref, cache_dir))
            digest = weights_hash(Path(ref.path))
        return digest, None
    except Exception as err:  # isolate: this revision fails, the sweep goes on
        msg = _one_line(err)
        print(f"probe-olmo: {ref.revision}: failed: {msg}", file=sys.stderr, flush=True)
        return None, msg


def _progress(rank: int, done: int, total: int, revision: str, elapsed: float) -> None:
    """One progress line per probed revision (readable in a terminal, a log file and CI alike)."""
    eta = elapsed / done * (total - done)
    print(f"probe-olmo: rank {rank}: {done}/{total} revisions ({revision}); elapsed {elapsed:.0f} s, ETA {eta:.0f} s",
          file=sys.stderr, flush=True)


def _probe_one(ref: CheckpointRef, runners: list[ProbeRunner], output_dir: Path, device: torch.device,
               cache_dir: Path | None, dtype: str, rank: int, heldout: Path | None) -> dict[str, Any]:
    """Load, probe, write probes.json, free. Returns the manifest fields to update."""
    out: dict[str, Any] = {"rank": rank, "error": None}
    module = None
    alive = lambda: None  # noqa: E731  (weak reference to the loaded model, set once it exists)
    try:
        t0 = time.perf_counter()
        path = Path(ref.path) if ref.path is not None else download(ref, cache_dir)
        module = FrozenCausalLM(path, device=device, dtype=dtype, tokens=ref.tokens)  # type: ignore[arg-type]
        alive = weakref.ref(module.model)
        out["seconds_load"] = round(time.perf_counter() - t0, 4)
        t0 = time.perf_counter()
        doc: dict[str, Any] = {}
        source = heldout_source(path, heldout)
        for runner in runners:
            runner.validate(module.model)
            windows = None
            if source is not None and runner.n_heldout > 0:
                windows = heldout_windows(source, runner.n_heldout, runner.heldout_seed,
                                          getattr(module.model.config, "max_position_embeddings", None),
                                          runner.heldout_offsets)
            part = runner.probe_model(module.model, step=ref.step or 0, tokens=ref.tokens, heldout=windows)
            seconds = {**doc.get("probe_seconds", {}), **part.pop("probe_seconds", {})}
            doc.update(part)
            doc["probe_seconds"] = seconds
        doc.update(step=ref.step, tokens=ref.tokens, revision=ref.revision, commit=ref.commit)
        from hierlatent.io import atomic_write_json

        atomic_write_json(output_dir / ref.revision / "probes.json", doc)
        out["seconds_probe"] = round(time.perf_counter() - t0, 4)
        out["status"] = "done"
    except Exception as err:  # isolate: record, report on stderr, continue with the next revision
        out.update(status="failed", error=_one_line(err))
        print(f"probe-olmo: {ref.revision}: failed: {out['error']}", file=sys.stderr, flush=True)
    finally:
        del module
        if alive() is not None:  # a reference cycle keeps it: collect (a full gc costs ~0.3 s, skip if not needed)
            gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]
