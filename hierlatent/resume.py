"""What ``--ckpt_path last`` resumes from, and starting afresh when a killed run left no checkpoint.

``newest_intact`` picks the newest checkpoint of the run that can be read: ``last.ckpt``, or a newer
``step=N.ckpt`` (a kill between the top-k save and the ``last.ckpt`` save of one step, e.g. during the HF
export), or, when ``last.ckpt`` is damaged (0 bytes, torn), the newest readable one, with a warning naming
both. ``start_afresh`` is the case of a run killed before its first checkpoint: its TensorBoard events are
removed and the run starts over in the same directory (SLURM requeue and launchers always pass ``last``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hierlatent._lightning_compat import checkpoint_dir, last_checkpoints, writer_is_open
from hierlatent.callbacks.checkpoint import _STEP
from hierlatent.errors import CheckpointError


def newest_intact(trainer: Any) -> Path | None:
    """The checkpoint ``--ckpt_path last`` resumes from; None when the run has none yet (a first launch).

    Args:
        trainer: the configured trainer (its checkpoint callbacks name the checkpoint directories).

    Raises:
        CheckpointError: checkpoints exist but none can be read.
    """
    lasts, others = _candidates(trainer)
    steps: dict[Path, int | str] = {p: ckpt_step(p) for p in lasts}
    intact = sorted((s, p.stat().st_mtime, str(p)) for p, s in steps.items() if isinstance(s, int))
    best = Path(intact[-1][2]) if intact else None
    for path in sorted(set(others) - lasts, key=others.get, reverse=True):
        if best is not None and others[path] <= steps[best]:
            break  # step files are visited newest first: none left is newer than last.ckpt
        steps[path] = ckpt_step(path)
        if isinstance(steps[path], int):
            if best is not None:
                print(f"resuming from {path} (step {steps[path]}), newer than {best} (step {steps[best]})",
                      file=sys.stderr)
            best = path
            break
    damaged = [f"{p} ({s})" for p, s in steps.items() if isinstance(s, str)]
    if damaged and best is None:
        raise CheckpointError(f"--ckpt_path last: no intact checkpoint to resume from; damaged: {', '.join(damaged)}")
    if damaged:
        print(f"warning: damaged checkpoint {'; '.join(damaged)}; resuming from {best}, the newest intact one",
              file=sys.stderr)
    return best


def _candidates(trainer: Any) -> tuple[set[Path], dict[Path, int]]:
    """(``last*.ckpt`` files, other ``*.ckpt`` files with the step in their name) of every checkpoint callback.

    Paths are absolute, as Lightning's own search returns them (and as the messages print them).
    """
    lasts: set[Path] = set()
    others: dict[Path, int] = {}
    for cb in trainer.checkpoint_callbacks:
        lasts |= {Path(os.path.abspath(p)) for p in last_checkpoints(cb, trainer)}
        folder = Path(os.path.abspath(checkpoint_dir(cb, trainer)))  # where Lightning looks
        for path in folder.glob("*.ckpt") if folder.is_dir() else ():
            match = _STEP.search(path.stem)
            if match:
                others[path] = int(match.group(1))
    return lasts, others


def ckpt_step(path: Path) -> int | str:
    """The global step stored in checkpoint ``path``, or why it cannot be read (a 0-byte or torn file).

    Args:
        path: a Lightning ``.ckpt`` file (opened memory-mapped: only its index is read).
    """
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["global_step"])
    except Exception as exc:  # noqa: BLE001 — any unreadable file is the same damage
        text = str(exc).strip()
        return f"unreadable: {text.splitlines()[0] if text else type(exc).__name__}"


def start_afresh(logger: Any, log_dir: Path, events: list[Path]) -> None:
    """``--ckpt_path last`` without any checkpoint: drop the killed run's TensorBoard events, say so, start over.

    Args:
        logger: the run's logger (a ``ResumableTensorBoardLogger`` normally).
        log_dir: the run directory.
        events: the ``events.out.tfevents.*`` files found there.
    """
    if not writer_is_open(logger):
        for event_file in events:
            event_file.unlink(missing_ok=True)
    elif hasattr(logger, "purge_from"):
        logger.purge_from(0)  # a writer is already open: hide every earlier event instead
    print(f"--ckpt_path last: {log_dir} holds no checkpoint yet; starting the run afresh there (removed the"
          f" {len(events)} TensorBoard event file(s) of the interrupted run)", file=sys.stderr)
