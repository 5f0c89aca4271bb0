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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.errors import ConfigError, HierlatentError
from hierlatent.io import check_writable
from hierlatent.olmo.checkpoints import CheckpointRef, discover, download, hub_weights_hash, weights_hash
from hierlatent.olmo.frozen import FrozenCausalLM, probe_checkpoint
from hierlatent.olmo.heldout import check_heldout, check_roles
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
    check_writable(Path(output_dir))  # --output_dir: a directory this process can create or write into
    refs = discover(checkpoints, revisions)  # errors surface here, before any process is started
    local = [Path(r.path) if r.path else None for r in refs]
    check_heldout([p for r in runners for p in r.probes], local, heldout)
    check_roles(runners, local, heldout)  # role-needing probes are refused here, naming the probe
    sources = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    args = (trainer, runners, refs, Path(output_dir), cache_dir, dtype, [str(s) for s in sources], heldout)
    launcher = trainer.strategy.launcher
    if launcher is None:
        return _sweep(*args)
    # trainer=None: the launcher must not try to ship a fitted LightningModule's state back from rank 0
    return launcher.launch(_sweep, *args, trainer=None)


@dataclass(frozen=True)
class _Ranks:
    """This process's place among the probe-olmo processes (one process: rank 0 of 1, no collectives)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> _Ranks:
        """The initialised process group's rank and size (one process without one)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def share(self, items: list[CheckpointRef]) -> list[CheckpointRef]:
        """This rank's round-robin share of ``items`` (step order in, step order out)."""
        return [x for i, x in enumerate(items) if i % self.world == self.rank]

    def gather(self, part: dict[str, Any]) -> dict[str, Any]:
        """The union of every rank's ``part`` (every rank calls it)."""
        if self.world == 1:
            return dict(part)
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, part)
        return {k: v for p in parts for k, v in p.items()}

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _sweep(trainer: Trainer, runners: list[ProbeRunner], refs: list[CheckpointRef], output_dir: Path,
           cache_dir: Path | None, dtype: str, sources: list[str], heldout: Path | None) -> dict[str, Any] | None:
    """The module docstring's three phases on this rank; returns rank 0's manifest (None elsewhere)."""
    trainer.strategy.setup_environment()  # process group + device, as Lightning's own entry points do
    ranks = _Ranks.current()
    refs = ranks.broadcast(refs)  # every rank works from rank 0's listing (a hub listing could change in between)
    old = read_manifest(output_dir)
    names = [r.name for runner in runners for r in runner.probes]
    complete = {r.revision for r in refs if is_complete(output_dir / r.revision / "probes.json", names)}
    hashes = _hash_phase(refs, old, complete, cache_dir, ranks)
    entries, todo = _plan(refs, hashes, old, complete)
    updates = _probe_phase(todo, runners, output_dir, trainer.strategy.root_device, cache_dir, dtype, heldout, ranks)
    for rev, update in updates.items():
        entries[rev].update(update)
    manifest = None
    if ranks.rank == 0:  # phase 3
        manifest = write_manifest(output_dir, entries, sources)
        rebuild_tensorboard(output_dir, runners, [r.revision for r in refs])
    if ranks.world > 1:
        dist.barrier()
    _raise_failures(entries, output_dir)
    return manifest


def _hash_phase(refs: list[CheckpointRef], old: dict[str, dict], complete: set[str], cache_dir: Path | None,
                ranks: _Ranks) -> dict[str, tuple[str | None, str | None]]:
    """Phase 1: ``(weights hash, error)`` of every revision, split across ranks and gathered.

    Args:
        refs: the revisions in step order.
        old: the earlier run's manifest entries by revision (a completed revision reuses its hash).
        complete: revisions whose probes.json already holds every configured probe.
        cache_dir: hub download cache.
        ranks: this process's rank and the world size.
    """
    mine = {ref.revision: _hash(ref, old.get(ref.revision), ref.revision in complete, cache_dir)
            for ref in ranks.share(refs)}
    return ranks.gather(mine)


def _plan(refs: list[CheckpointRef], hashes: dict[str, tuple[str | None, str | None]], old: dict[str, dict],
          complete: set[str]) -> tuple[dict[str, dict[str, Any]], list[CheckpointRef]]:
    """The manifest entries (failed until probed) and the revisions left to probe, in step order.

    The earliest revision with given weights is the one probed; a later one is its ``duplicate``; a
    completed revision keeps the earlier run's record.

    Args:
        refs: the revisions in step order.
        hashes: phase 1's ``(hash, error)`` by revision.
        old: the earlier run's manifest entries by revision.
        complete: revisions whose probes.json already holds every configured probe.
    """
    entries: dict[str, dict[str, Any]] = {}
    first_of: dict[str, str] = {}
    todo = []
    for ref in refs:
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
    return entries, todo


def _probe_phase(todo: list[CheckpointRef], runners: list[ProbeRunner], output_dir: Path, device: torch.device,
                 cache_dir: Path | None, dtype: str, heldout: Path | None, ranks: _Ranks) -> dict[str, dict[str, Any]]:
    """Phase 2: this rank probes its share of ``todo``, one checkpoint in memory at a time; every rank's
    manifest updates, gathered.

    Args:
        todo: the revisions to probe, in step order.
        runners: the configured probe runners.
        output_dir: where ``<revision>/probes.json`` goes.
        device: the device the checkpoints are loaded onto.
        cache_dir: hub download cache.
        dtype: parameter dtype of the loaded checkpoints.
        heldout: the ``--heldout`` corpus directory, if given.
        ranks: this process's rank and the world size.
    """
    done_here = {}
    mine = ranks.share(todo)
    t0 = time.perf_counter()
    for n, ref in enumerate(mine, 1):
        done_here[ref.revision] = _probe_one(ref, runners, output_dir, device, cache_dir, dtype, ranks.rank, heldout)
        _progress(ranks.rank, n, len(mine), ref.revision, time.perf_counter() - t0)
    return ranks.gather(done_here)


def _raise_failures(entries: dict[str, dict[str, Any]], output_dir: Path) -> None:
    """One error naming the first failed revisions (all of them are in the manifest), if any failed."""
    failed = [e for e in entries.values() if e["status"] == "failed"]
    if failed:
        detail = "; ".join(f"{e['revision']}: {e['error']}" for e in failed[:3])
        more = f"; ... see {output_dir / 'manifest.json'}" if len(failed) > 3 else ""
        raise HierlatentError(f"{len(failed)} of {len(entries)} checkpoints failed: {detail}{more}")


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
    from hierlatent.progress import progress_line

    print(progress_line(f"probe-olmo: rank {rank}", done, total, "revisions", elapsed, revision), file=sys.stderr, flush=True)


def _probe_one(ref: CheckpointRef, runners: list[ProbeRunner], output_dir: Path, device: torch.device,
               cache_dir: Path | None, dtype: str, rank: int, heldout: Path | None) -> dict[str, Any]:
    """Load, probe, write probes.json, free. Returns the manifest fields to update."""
    out: dict[str, Any] = {"rank": rank, "error": None}
    module = None
    alive = lambda: None  # noqa: E731  (weak reference to the loaded model, set once it exists)
    try:
        t0 = time.perf_counter()
        path = Path(ref.path) if ref.path is not None else download(ref, cache_dir)
        module = FrozenCausalLM(path, device=device, dtype=dtype)  # type: ignore[arg-type]
        alive = weakref.ref(module.model)
        out["seconds_load"] = round(time.perf_counter() - t0, 4)
        t0 = time.perf_counter()
        doc = probe_checkpoint(runners, module.model, path, heldout, ref.step or 0, ref.tokens)
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
