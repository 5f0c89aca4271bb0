"""``<output_dir>/manifest.json`` of a probe-olmo sweep: one entry per revision, merged across ranks and runs.

Entry fields: ``revision``, ``step``, ``tokens``, ``source``, ``repo_id``, ``commit`` (hub commit hash or
null), ``weights_sha256`` (see ``checkpoints.weights_hash``), ``status`` (``done`` | ``failed`` |
``duplicate``), ``duplicate_of`` (revision whose weights are identical), ``seconds_load``,
``seconds_probe``, ``error`` (one line or null), ``rank`` (process that probed it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hierlatent.errors import CheckpointError
from hierlatent.io import atomic_write_json

MANIFEST_FORMAT = 1
STATUSES = ("done", "failed", "duplicate")


def manifest_path(output_dir: Path) -> Path:
    """Where the manifest lives."""
    return Path(output_dir) / "manifest.json"


def read_manifest(output_dir: Path) -> dict[str, dict[str, Any]]:
    """Entries of an earlier run by revision ({} if there is none).

    Raises:
        CheckpointError: the manifest exists but is not valid JSON of this format.
    """
    path = manifest_path(output_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {e["revision"]: e for e in data["revisions"]}
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: corrupt manifest ({err}); move it away to start afresh") from err


def write_manifest(output_dir: Path, entries: dict[str, dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    """Write all entries (step order) with a status summary, atomically; return the written object."""
    ordered = sorted(entries.values(), key=lambda e: (e.get("step") is None, e.get("step") or 0, e["revision"]))
    summary = {s: sum(e["status"] == s for e in ordered) for s in STATUSES}
    data = {"format": MANIFEST_FORMAT, "sources": [str(s) for s in sources], "summary": summary,
            "revisions": ordered}
    atomic_write_json(manifest_path(output_dir), data)
    return data
