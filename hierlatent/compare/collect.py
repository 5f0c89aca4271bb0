"""Read runs into tables: condition -> run -> metric -> {step: value}.

Metrics are every number in a run's probe documents (``probes/step-<N>.json``): scalars by their dotted
path (``induction.standard``, ``hydra.paper.k1.3``) and each entry of a flat list by its index
(``hydra.mcgrath.compensation[2]`` = layer 2, ``induction.k_order[0]`` = k = 1). The cells of matrices
(per-head and layer-to-layer tables), strings, booleans and bookkeeping (``step``, ``tokens``, ``probe_seconds``) are not
metrics. Maxima are metrics too: ``<list>.max`` over a list's entries (e.g. the best layer of
``query_fv.transfer``) and ``<table>.max[l]`` over each row of a layer x head table (e.g.
``hydra.headwise.compensation.max[3]``: layer 3's most compensating head). The loss curves enter as ``loss/train`` and ``loss/val``: the last value TensorBoard holds at or
before each checkpoint step (the steps of the probe documents; the ``val/loss`` steps for a run without
probes).
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hierlatent.errors import ConfigError

SKIP_KEYS = {"step", "tokens", "probe_seconds", "per_head", "matrix"}


@dataclass
class RunData:
    """One run's metrics: metric -> {step: value}."""

    condition: str
    seed: int | None
    path: Path
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)


def flatten(doc: dict, prefix: str = "") -> dict[str, float]:
    """The metrics of one probe document (see the module docstring)."""
    out: dict[str, float] = {}
    for key, value in doc.items():
        if key in SKIP_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
        elif _numbers(value):
            row = [math.nan if v is None else float(v) for v in value]
            out.update({f"{name}[{i}]": v for i, v in enumerate(row)})
            out[f"{name}.max"] = _max(row)
        elif isinstance(value, list) and value and all(_numbers(r) for r in value):
            for i, r in enumerate(value):  # a layer x head table: each layer's maximum over heads
                out[f"{name}.max[{i}]"] = _max([math.nan if v is None else float(v) for v in r])
    return out


def _numbers(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(
        (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None for v in value)


def _max(row: list[float]) -> float:
    finite = [v for v in row if math.isfinite(v)]
    return max(finite) if finite else math.nan


def _probe_docs(run: Path) -> dict[int, dict]:
    docs = {}
    for f in sorted((run / "probes").glob("step-*.json")):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read probe document {f}: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("step"), int):
            raise ConfigError(f"probe document {f}: expected a JSON object with an integer step")
        docs[doc["step"]] = doc
    return docs


def _loss_at(steps: np.ndarray, values: np.ndarray, step: int) -> float | None:
    i = int(np.searchsorted(steps, step, side="right")) - 1
    return float(values[i]) if i >= 0 else None


def read_run(condition: str, seed: int | None, path: Path) -> RunData:
    """One run directory's probe metrics and loss curves at its checkpoint steps.

    Args:
        condition: the condition the run belongs to.
        seed: its seed (None when unknown).
        path: the run's log directory.
    """
    from hierlatent.events import EVENT_GLOB, read_scalars

    if not path.is_dir():
        raise ConfigError(f"run directory {path} does not exist")
    run = RunData(condition, seed, path)
    docs = _probe_docs(path)
    for step, doc in docs.items():
        for name, value in flatten(doc).items():
            run.metrics.setdefault(name, {})[step] = value
    events = sorted(path.glob(EVENT_GLOB))
    scalars = read_scalars(events) if events else {}
    steps = sorted(docs) or (scalars["val/loss"][0].tolist() if "val/loss" in scalars else [])
    for tag, name in (("train/loss", "loss/train"), ("val/loss", "loss/val")):
        if tag in scalars:
            for step in steps:
                value = _loss_at(*scalars[tag], step)
                if value is not None:
                    run.metrics.setdefault(name, {})[step] = value
    if not run.metrics:
        raise ConfigError(f"run directory {path} has neither probe documents nor TensorBoard losses")
    return run


def read_sweep(sweep_dir: Path) -> tuple[list[RunData], bool, list[str]]:
    """The finished runs of a sweep directory (``manifest.json``), whether seeds are paired, and notes."""
    entries, paired, notes = sweep_entries(sweep_dir)
    return [read_run(*e) for e in entries], paired, notes


def sweep_entries(sweep_dir: Path) -> tuple[list[tuple[str, int | None, Path]], bool, list[str]]:
    """(condition, seed, log dir) of a sweep's finished runs, whether seeds are paired, and notes (nothing read yet)."""
    path = Path(sweep_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        records = manifest["runs"]
    except FileNotFoundError:
        raise ConfigError(f"sweep directory {sweep_dir}: no manifest.json (is it a `hierlatent sweep` --output_dir?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a sweep manifest ({exc})") from None
    runs, notes = [], []
    for rec in records:
        if rec.get("status") != "finished":
            notes.append(f"{rec.get('condition')}/seed-{rec.get('seed')} left out: status {rec.get('status')}")
            continue
        log_dir = Path(rec["log_dir"])
        if not log_dir.is_absolute() and not log_dir.is_dir():
            log_dir = Path(sweep_dir) / rec["condition"] / f"seed-{rec['seed']}"
        runs.append((rec["condition"], rec.get("seed"), log_dir))
    return runs, bool(manifest.get("paired", False)), notes


def align_by_index(runs: list[RunData]) -> None:
    """Re-key every run's steps by their rank among its checkpoint steps (0 = first probe point, ...).

    For conditions whose runs take different step counts (corpora of different lengths, e.g. PCFG 1,248
    vs n-gram 1,258 steps for the same token budget), the k-th checkpoint of every run is the same share of
    training; ``--align index`` compares those.
    """
    for run in runs:
        steps = sorted({s for values in run.metrics.values() for s in values})
        rank = {s: i for i, s in enumerate(steps)}
        run.metrics = {m: {rank[s]: v for s, v in values.items()} for m, values in run.metrics.items()}


def parse_run_args(items: list[str]) -> list[tuple[str, Path]]:
    """``--runs CONDITION=PATH ...`` -> [(condition, path)]; a PATH alone is grouped by its parent's name."""
    out = []
    for item in items:
        cond, sep, path = item.partition("=")
        if not sep:
            cond, path = Path(item).resolve().parent.name, item
        if not cond or not path:
            raise ConfigError(f"--runs: expected CONDITION=PATH, got {item!r}")
        out.append((cond, Path(path)))
    return out


def select_metrics(runs: list[RunData], patterns: list[str] | None) -> list[str]:
    """Metric names present in any run, filtered by patterns (``--metrics``: ``*``/``?`` wildcards, literal brackets)."""
    names = sorted({m for r in runs for m in r.metrics})
    if patterns:
        # `*` and `?` are wildcards; brackets are literal, so `compensation[2]` names layer 2
        globs = [p.replace("[", "[[]") for p in patterns]
        chosen = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
        unmatched = [p for p, g in zip(patterns, globs) if not any(fnmatch.fnmatchcase(n, g) for n in names)]
        if unmatched:
            raise ConfigError(f"--metrics: no metric matches {unmatched}; metrics are e.g. {names[:8]}")
        return chosen
    return names
