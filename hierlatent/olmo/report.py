"""Completion check of a revision's probes.json and the TensorBoard rebuild at the end of a sweep.

TensorBoard events of a sweep are a derived artefact: rank 0 rewrites ``<output_dir>/tensorboard/`` from
every revision's probes.json in step order after each run, so a resumed or extended sweep shows each
revision exactly once and the growing layer x step heatmaps contain every revision probed so far.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger

from hierlatent.callbacks.probes import ProbeRunner, extract_fragment


def is_complete(path: Path, probe_names: list[str]) -> bool:
    """probes.json exists, parses, and holds a fragment for every configured probe."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "step" in doc and all(extract_fragment(doc, n) is not None for n in probe_names)


def rebuild_tensorboard(output_dir: Path, runners: list[ProbeRunner], revisions: list[str]) -> None:
    """Log every completed revision's scalars and heatmaps at global step = its training step."""
    tb_dir = Path(output_dir) / "tensorboard"
    if tb_dir.is_dir():
        for old in tb_dir.glob("events.out.tfevents.*"):
            old.unlink()
    docs = []
    for rev in revisions:
        path = Path(output_dir) / rev / "probes.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            if doc.get("step") is None:
                print(f"probe-olmo: {rev}: no step in the name, not logged to TensorBoard", file=sys.stderr)
                continue
            docs.append(doc)
    docs.sort(key=lambda d: d["step"])
    logger = TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version="", default_hp_metric=False)
    for runner in runners:
        runner.columns = {}  # the growing heatmaps restart from the first revision
    for doc in docs:
        for runner in runners:
            runner.log_results(runner.results_from_document(doc), int(doc["step"]), [logger])
    logger.finalize("success")
