"""TensorBoard event files: the scalars of one run, several files of a resumed run merged.

A leaf module (imports only ``hierlatent.errors``; TensorBoard is imported when a file is read), shared by
everything that reads a run's curves back: ``plot``, the fit summary (``trainer.py``), ``sweep``'s run
status and ``compare``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from hierlatent.errors import ConfigError

#: the file names TensorBoard writers give their event files (one or more per run directory)
EVENT_GLOB = "events.out.tfevents.*"


def file_order(path: Path) -> tuple:
    """Sort key of an event file: (creation time, writer counter) parsed from
    ``events.out.tfevents.<time>.<host>.<pid>.<counter>[suffix]``; plain name order would put counter 10
    before 9."""
    m = re.match(r"events\.out\.tfevents\.(\d+)\.(.*)\.(\d+)\.(\d+)", path.name)
    return (int(m[1]), int(m[3]), int(m[4]), path.name) if m else (math.inf, 0, 0, path.name)


def _purge_step(path: Path) -> int | None:
    """The step of a SessionLog.START marker at the head of the file (a resumed writer's ``purge_step``)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    for i, event in enumerate(EventFileLoader(str(path)).Load()):
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            return int(event.step)
        if i >= 4:  # writers put the marker right after the file_version header
            return None
    return None


def read_event_file(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of one event file: tag -> [(step, value), ...] in write order."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    # Scalars: keep all (0); the heavy kinds we never plot are sampled down to one item.
    guidance = {ea.SCALARS: 0, ea.TENSORS: 0, ea.IMAGES: 1, ea.HISTOGRAMS: 1, ea.AUDIO: 1, ea.COMPRESSED_HISTOGRAMS: 1}
    acc = ea.EventAccumulator(str(path), size_guidance=guidance, purge_orphaned_data=False)
    try:
        acc.Reload()
    except Exception as exc:  # the reader raises assorted protobuf/IO errors on a damaged file
        raise ConfigError(f"cannot read TensorBoard event file {path}: {exc}") from exc
    out: dict[str, list[tuple[int, float]]] = {}
    tags = acc.Tags()
    for tag in tags.get(ea.SCALARS, []):
        out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    for tag in tags.get(ea.TENSORS, []):  # tensorboard.summary v2 writers log scalars as 0-d tensors
        from tensorboard.util import tensor_util

        rows = []
        for e in acc.Tensors(tag):
            arr = tensor_util.make_ndarray(e.tensor_proto)
            if arr.size == 1 and arr.dtype.kind in "fiu":
                rows.append((e.step, float(arr.reshape(()))))
        if rows:
            out.setdefault(tag, rows)
    return out


def read_scalars(files: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Merge the scalars of several event files (a resumed run): the last value written per step wins.

    Files are applied in creation order. A file that starts with a resumed writer's purge marker at step
    s first drops every earlier value at steps >= s (the killed run's orphans), as TensorBoard does.

    Args:
        files: the event files of one run.
    """
    merged: dict[str, dict[int, float]] = {}
    for f in sorted(files, key=file_order):
        purge = _purge_step(f)
        if purge is not None:
            merged = {tag: {s: v for s, v in rows.items() if s < purge} for tag, rows in merged.items()}
        for tag, rows in read_event_file(f).items():
            merged.setdefault(tag, {}).update(rows)  # dict update keeps the last value per step
    out = {}
    for tag, by_step in merged.items():
        if by_step:
            steps = np.array(sorted(by_step), dtype=np.int64)
            out[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return out
