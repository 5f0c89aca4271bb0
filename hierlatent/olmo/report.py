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

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.callbacks.suite import ProbeSuite
from hierlatent.documents import extract_fragment
from hierlatent.events import EVENT_GLOB


def is_complete(path: Path, probe_names: list[str]) -> bool:
    """probes.json exists, parses, and holds a fragment for every configured probe."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "step" in doc and all(extract_fragment(doc, n) is not None for n in probe_names)


def rebuild_tensorboard(output_dir: Path, runners: list[ProbeRunner], revisions: list[str]) -> None:
    """Log every completed revision's scalars and heatmaps at global step = its training step.

    Fresh suites of the runners' probes log the documents, so the growing heatmaps start at the first revision.
    """
    tb_dir = Path(output_dir) / "tensorboard"
    if tb_dir.is_dir():
        for old in tb_dir.glob(EVENT_GLOB):
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
    suites = [ProbeSuite(runner.probes, log_images=runner.log_images) for runner in runners]
    for doc in docs:
        for suite in suites:
            suite.log(doc, [logger])
    logger.finalize("success")
