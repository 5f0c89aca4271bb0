"""Turn the ``--runs`` / ``--olmo`` paths into `Source` objects, in the paper's panel order.

A ``--runs`` path is a TensorBoardLogger version dir (``<save_dir>/<name>/version_N/``) or any parent of
one or several: every directory below it holding event files or ``probes/step-*.json`` is one run (its
own subdirectories -- ``hf/``, ``probes/``, ``checkpoints/`` -- are not searched further). A probe-olmo
output directory found there is read as an OLMo source.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hierlatent.errors import ConfigError
from hierlatent.events import EVENT_GLOB, read_scalars
from hierlatent.plot.sources import (
    CORPUS_LABELS,
    PAPER_ORDER,
    Source,
    probes_from_scalars,
    read_fit_probes,
    read_loss_csv,
    read_olmo_probes,
)


class _LenientLoader(yaml.SafeLoader):
    """SafeLoader that reads ``!!python/...`` tags (hparams.yaml may have them) as plain data."""


_LenientLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def _events(d: Path) -> list[Path]:
    return sorted(p for p in d.glob(EVENT_GLOB) if p.is_file())


def is_olmo_dir(d: Path) -> bool:
    """A probe-olmo output dir: ``manifest.json`` or ``<revision>/probes.json``."""
    return (d / "manifest.json").is_file() or any(d.glob("*/probes.json"))


def is_fit_run(d: Path) -> bool:
    """A fit log dir: event files or ``probes/step-*.json`` directly inside."""
    return bool(_events(d)) or any((d / "probes").glob("step-*.json"))


def _class_paths(node: object) -> list[tuple[str, dict]]:
    """All (class_path, init_args) pairs in a parsed YAML tree, depth first."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            found.append((node["class_path"], node.get("init_args") or {}))
        for v in node.values():
            found += _class_paths(v)
    elif isinstance(node, list):
        for v in node:
            found += _class_paths(v)
    return found


def corpus_label(run: Path) -> str:
    """Corpus label from the run's saved ``config.yaml`` (or ``hparams.yaml``); else the run's name.

    Args:
        run: the run directory.
    """
    for name in ("config.yaml", "hparams.yaml"):
        f = run / name
        if not f.is_file():
            continue
        try:
            tree = yaml.load(f.read_text(), Loader=_LenientLoader)
        except (OSError, yaml.YAMLError):
            continue  # an unreadable config only costs us the label
        for class_path, init_args in _class_paths(tree):
            label = CORPUS_LABELS.get(class_path.rsplit(".", 1)[-1])
            if label:
                return label + (" (flat)" if label == "Toy" and isinstance(init_args, dict) and init_args.get("flat") else "")
    return run_name(run)


def run_name(run: Path) -> str:
    """``<name>/version_N`` for a TensorBoardLogger version dir, else the directory name."""
    run = run.resolve()
    return f"{run.parent.name}/{run.name}" if run.name.startswith("version_") else run.name


def read_fit_run(run: Path) -> Source:
    """Read one fit run directory."""
    scalars = read_scalars(_events(run))
    probes = probes_from_scalars(scalars)
    probes.update(read_fit_probes(run))  # JSON is the full record; TensorBoard only fills gaps
    return Source(label=corpus_label(run), kind="fit", path=run, scalars=scalars, probes=probes)


def read_olmo(root: Path, loss_csv: Path | None) -> Source:
    """Read a probe-olmo output directory (and optionally its loss CSV)."""
    tb = root / "tensorboard"
    scalars = read_scalars(list(tb.rglob(EVENT_GLOB)) if tb.is_dir() else [])
    probes = probes_from_scalars(scalars)
    notes: list[str] = []
    probes.update(read_olmo_probes(root, notes))
    loss = read_loss_csv(loss_csv) if loss_csv is not None else None
    return Source(label="OLMo", kind="olmo", path=root, scalars=scalars, probes=probes, loss=loss, notes=notes)


def find_runs(root: Path, flag: str = "--runs") -> tuple[list[Path], list[Path]]:
    """Fit run dirs and OLMo dirs at or below ``root`` (sorted); ConfigError when there are none.

    Args:
        root: a path given on the command line.
        flag: the flag it came from, for the error message.
    """
    if not root.is_dir():
        raise ConfigError(f"{flag}: {root} is not a directory")
    fits, olmos = [], []
    for dirpath, dirnames, _ in os.walk(root):
        d = Path(dirpath)
        if is_olmo_dir(d):
            olmos.append(d)
            dirnames.clear()
        elif is_fit_run(d):
            fits.append(d)
            dirnames.clear()
        else:
            dirnames.sort()
    if not fits and not olmos:
        raise ConfigError(
            f"{flag}: no run found in {root} (expected TensorBoard event files {EVENT_GLOB} or "
            f"probes/step-<N>.json in a fit log dir, or <revision>/probes.json of probe-olmo)"
        )
    return fits, olmos


def panel_rank(label: str) -> int:
    """Paper order: N-gram | PCFG | OLMo | everything else."""
    return PAPER_ORDER.index(label) if label in PAPER_ORDER else len(PAPER_ORDER)


def load_sources(runs: list[Path], olmo: Path | None, olmo_loss_csv: Path | None) -> list[Source]:
    """All sources in panel order, titles disambiguated when two runs share a corpus label.

    Args:
        runs: ``--runs`` paths (fit run dirs or their parents).
        olmo: ``--olmo`` probe-olmo output dir, or None.
        olmo_loss_csv: ``--olmo_loss_csv`` file, or None.
    """
    if not runs and olmo is None:
        raise ConfigError("--runs and --olmo are both empty: give at least one fit run directory or probe-olmo output directory")
    if olmo_loss_csv is not None and olmo is None:
        raise ConfigError("--olmo_loss_csv needs --olmo (the probe-olmo output directory it belongs to)")
    # Find everything first so a bad path fails before any event file is parsed.
    fits, olmos = [], []
    for r in runs:
        f, o = find_runs(Path(r))
        fits += f
        olmos += o
    if olmo is not None:
        if not Path(olmo).is_dir() or not (is_olmo_dir(Path(olmo)) or _has_tb(Path(olmo))):
            raise ConfigError(
                f"--olmo: no probe-olmo output in {olmo} (expected <revision>/probes.json, manifest.json or tensorboard/ event files)"
            )
        olmos.append(Path(olmo))
    seen: set[Path] = set()
    sources = []
    for d in fits:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            sources.append(read_fit_run(d))
    for d in olmos:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            sources.append(read_olmo(d, olmo_loss_csv if olmo is not None and d == Path(olmo) else None))
    sources.sort(key=lambda s: panel_rank(s.label))  # stable: command-line order within a label
    for s in sources:
        twins = [t for t in sources if t.label == s.label]
        s.title = s.label if len(twins) == 1 else f"{s.label} ({run_name(s.path)})"
    return sources


def _has_tb(d: Path) -> bool:
    return (d / "tensorboard").is_dir() and any((d / "tensorboard").rglob(EVENT_GLOB))


def load_sweep(root: Path) -> list[tuple[str, list[Source]]]:
    """``--sweep D``: (condition title, seed runs) for every ``D/<condition>/seed-<s>/`` fit run.

    Conditions keep the manifest's order (``D/manifest.json``), else name order; runs the manifest does not
    mark ``finished`` (failed, still running, killed) are left out, so no band mixes partial curves. Seeds
    are in numeric order.

    Args:
        root: the sweep output directory.
    """
    import json
    import re

    if not Path(root).is_dir():
        raise ConfigError(f"--sweep: {root} is not a directory")
    failed, order = set(), []
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text()).get("runs", [])
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(f"--sweep: cannot read {manifest}: {exc}") from exc
        failed = {(e.get("condition"), e.get("seed")) for e in entries if e.get("status") != "finished"}
        order = list(dict.fromkeys(e.get("condition") for e in entries))
    conds = sorted((d for d in Path(root).iterdir() if d.is_dir()), key=lambda d: (order.index(d.name) if d.name in order else len(order), d.name))
    groups = []
    for cond in conds:
        seeds = sorted(((int(m[1]), d) for d in cond.iterdir() if (m := re.fullmatch(r"seed-(\d+)", d.name)) and is_fit_run(d)))
        runs = [read_fit_run(d) for s, d in seeds if (cond.name, s) not in failed]
        for run in runs:
            run.title = f"{cond.name}/{run.path.name}"
        if runs:
            groups.append((cond.name, runs))
    if not groups:
        raise ConfigError(f"--sweep: no run found in {root} (expected {root}/<condition>/seed-<s>/ fit log dirs)")
    return groups
