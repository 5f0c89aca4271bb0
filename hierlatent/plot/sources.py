"""Find and read the runs the figures are drawn from: `fit` log dirs and `probe-olmo` output dirs.

A *source* is one panel's worth of data: the scalars of its TensorBoard event files (read by
``hierlatent.events``: several files of a resumed run merged, the last value per step kept), its probe
results (``probes/step-<N>.json`` for a fit run, ``<revision>/probes.json`` for OLMo; TensorBoard
``probes/...`` tags fill in steps without a JSON file), its reference losses and a corpus label ("N-gram",
"PCFG", "OLMo", ...) that orders the panels.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hierlatent.errors import ConfigError
from hierlatent.revisions import parse_revision

# Generator class name -> the corpus label the paper uses for the panel title.
CORPUS_LABELS = {"PCFGDocuments": "PCFG", "NGramCorpus": "N-gram", "ToyHierarchy": "Toy", "GrammarCorpus": "Grammar"}
PAPER_ORDER = ("N-gram", "PCFG", "OLMo")


@dataclass
class Source:
    """Everything one run contributes to the figures.

    Args:
        label: corpus label ("N-gram", "PCFG", "OLMo", "Toy", "Grammar" or the directory name).
        kind: "fit" for a training run, "olmo" for a probe-olmo output directory.
        path: the directory the data was read from.
        title: panel title (the label, plus the run name when two runs share a label).
        scalars: TensorBoard tag -> (steps int64 [N], values float64 [N]), sorted by step.
        probes: training step -> probe JSON dict (schema of docs/ARCHITECTURE.md "Probe JSON").
        loss: (steps, values) of an external loss curve (OLMo's CSV), or None.
        notes: warnings met while reading (data that was skipped), one line each.
    """

    label: str
    kind: str
    path: Path
    title: str = ""
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    probes: dict[int, dict] = field(default_factory=dict)
    loss: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def reference_losses(self) -> dict[str, float]:
        """Reference losses logged as ``reference/<key>`` (last logged value of each)."""
        return {t.split("/", 1)[1]: float(v[-1]) for t, (_, v) in self.scalars.items() if t.startswith("reference/") and len(v)}


# ---------------------------------------------------------------- TensorBoard probe tags


def probes_from_scalars(scalars: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[int, dict]:
    """Rebuild probe-JSON-shaped dicts from the ``probes/...`` TensorBoard tags (used where no JSON exists)."""
    out: dict[int, dict] = {}

    def put(step: int, keys: tuple, index: int | str | None, value: float) -> None:
        node = out.setdefault(int(step), {"step": int(step)})
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if index is None:
            node[keys[-1]] = value
        else:
            node.setdefault(keys[-1], {})[index] = value

    patterns = [
        (re.compile(r"probes/induction/k_order/k(\d+)$"), ("induction", "k_order"), lambda m: int(m[1]) - 1),
        (re.compile(r"probes/induction/(standard|duplicate|previous)$"), None, None),
        (re.compile(r"probes/hydra/paper_k(\d+)/layer(\d+)$"), None, None),
        (re.compile(r"probes/function_vectors/improvement/layer(\d+)$"), ("function_vectors", "improvement"), lambda m: int(m[1])),
    ]
    for tag, (steps, values) in scalars.items():
        for rx, keys, idx in patterns:
            m = rx.match(tag)
            if not m:
                continue
            for s, v in zip(steps.tolist(), values.tolist()):
                if keys is not None:
                    put(s, keys, idx(m), v)
                elif "hydra" in tag:
                    put(s, ("hydra", "paper", f"k{m[1]}"), m[2], v)
                else:
                    put(s, ("induction", m[1]), None, v)
    for probe in out.values():  # index dicts -> dense lists (NaN where a layer/k was not logged)
        for keys in (("induction", "k_order"), ("function_vectors", "improvement")):
            node = probe.get(keys[0], {})
            if isinstance(node.get(keys[1]), dict):
                d = node[keys[1]]
                node[keys[1]] = [d.get(i, math.nan) for i in range(max(d) + 1)]
    return out


# ---------------------------------------------------------------- probe JSON


def load_json(path: Path) -> dict:
    """Read a JSON object; a damaged file is a ConfigError naming it."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read probe results {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"probe results {path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_fit_probes(run: Path) -> dict[int, dict]:
    """``<run>/probes/step-<N>.json`` -> {N: probe dict}."""
    out = {}
    for f in (run / "probes").glob("step-*.json"):
        m = re.fullmatch(r"step-(\d+)\.json", f.name)
        if m:
            probe = load_json(f)
            out[int(probe.get("step", m[1]))] = probe
    return out


def read_olmo_probes(root: Path, notes: list[str]) -> dict[int, dict]:
    """``<root>/<revision>/probes.json`` -> {step: probe dict}; the step comes from the JSON or the name.

    Args:
        root: the probe-olmo output directory.
        notes: receives one line per revision skipped because it has no step (it cannot be placed on an axis).
    """
    out = {}
    for f in sorted(root.glob("*/probes.json")):
        probe = load_json(f)
        step = probe.get("step")
        if step is None:
            parsed = parse_revision(f.parent.name)
            if parsed is None:
                notes.append(f"{f}: no 'step' field and the revision name {f.parent.name!r} has no step; skipped")
                continue
            step = parsed[0]
        out[int(step)] = probe
    return out


def read_loss_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ``step,loss`` CSV (header optional) -> (steps, losses) sorted by step.

    Args:
        path: the CSV file given as ``--olmo_loss_csv``.
    """
    if not path.is_file():
        raise ConfigError(f"--olmo_loss_csv: {path} is not a file (expected a CSV with columns step,loss)")
    rows: dict[int, float] = {}
    with path.open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if lineno == 1 and [c.lower() for c in cells[:2]] == ["step", "loss"]:
                continue
            try:
                rows[int(float(cells[0]))] = float(cells[1])
            except (ValueError, IndexError):
                raise ConfigError(f"--olmo_loss_csv: {path} line {lineno}: expected 'step,loss' numbers, got {row!r}") from None
    if not rows:
        raise ConfigError(f"--olmo_loss_csv: {path} has no 'step,loss' rows")
    steps = np.array(sorted(rows), dtype=np.int64)
    return steps, np.array([rows[s] for s in steps], dtype=np.float64)
