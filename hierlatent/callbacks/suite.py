"""``ProbeSuite``: run a set of probes on a model, assemble the probe document, log it through any Lightning logger.

It decides nothing about *when*: the ``ProbeRunner`` callback (fit) and ``probe-olmo`` each hold one and
call ``run`` at their own steps. ``run`` calls every probe inside ``probe_context`` (eval, no grads, eager
attention, autocast off, RNG forked; all restored afterwards), merges the returned fragments into one
document (docs/probes_json.md), writes it on rank 0 and logs scalars to every logger and heatmap images
through ``callbacks.heatmaps.log_images`` (TensorBoard, W&B, MLflow, else PNG files in the logger's directory).

Probes compose by name: given several probes of one name (a preset's ``probes+:`` appended after a
config's list), the later one replaces the earlier, in its place, so the order of the lists never matters.

DDP: probes are sharded across ranks (probe i on rank i % world_size) and the fragments are gathered with
``all_gather_object`` that every rank calls. Every rank holds an identical replica of the model and the
probes' stimuli are seeded, so a probe's result does not depend on which rank runs it. Errors are gathered
too and re-raised on every rank, so a failing probe cannot leave the other ranks waiting in a collective.
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from hierlatent.callbacks.heatmaps import log_images
from hierlatent.corpora.base import Vocabulary
from hierlatent.documents import extract_fragment, merge_fragment
from hierlatent.errors import ProbeError
from hierlatent.io import atomic_write_json
from hierlatent.probes.adapter import ModelAdapter, probe_mode
from hierlatent.probes.base import Probe


@contextlib.contextmanager
def probe_context(model: torch.nn.Module) -> Iterator[None]:
    """Everything a probe run needs, and a guarantee that training resumes exactly as it was.

    The adapter's ``probe_mode`` restores train/eval, attention implementation, hooks and requires_grad;
    autocast is switched off so probes run in the model's own dtype (float32 under ``*-mixed``
    precision, bf16 under ``bf16-true``) whatever context the hook is called from; the RNG states are
    forked so seeded probe stimuli do not shift the training data order or dropout masks.
    """
    device = next(model.parameters()).device
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.autocast(device.type, enabled=False), probe_mode(model):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def to_jsonable(obj: Any) -> Any:
    """Tensors/arrays/numpy scalars -> nested lists and Python numbers (the one host sync of a result)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def compose_by_name(probes: Sequence[Probe]) -> list[Probe]:
    """One probe per name: a later probe replaces an earlier one of the same name, keeping the earlier's place.

    Args:
        probes: the configured probes, e.g. a config's list followed by a preset's (``probes+:``).
    """
    by_name: dict[str, Probe] = {}
    for probe in probes:
        by_name[probe.name] = probe  # re-assigning a key keeps its insertion position
    return list(by_name.values())


def _tag(key: str) -> str:
    return key if key.startswith("probes/") else f"probes/{key}"


class ProbeSuite:
    """The probes of one runner: bind, validate, run, assemble, write and log (no schedule, no Trainer).

    Args:
        probes: the probes; several of one name compose (the last replaces the others, ``compose_by_name``).
        log_images: log layer x head and growing layer x step heatmaps as images.
        where: the configuration key of ``probes`` in error messages (e.g. ``ProbeRunner.probes``).
    """

    def __init__(self, probes: Sequence[Probe], log_images: bool = True, where: str = "ProbeSuite.probes") -> None:
        if not probes:
            raise ProbeError(f"{where}: give at least one probe")
        self.probes = compose_by_name(probes)
        self.log_images, self.where = log_images, where
        self.columns: dict[str, dict[int, list[float]]] = {}  # growing heatmaps: name -> step -> column

    def _label(self, i: int, probe: Probe) -> str:
        return f"{self.where}[{i}] ({type(probe).__name__}, {probe.name!r})"

    def bind(self, vocabulary: Vocabulary | None) -> None:
        """Give every probe the corpus vocabulary; refuse a probe whose roles the corpus lacks (names it).

        Args:
            vocabulary: the corpus ``Vocabulary`` (None: no corpus, e.g. a data module without a generator).
        """
        self.check_roles(set(vocabulary.roles) if vocabulary is not None else set())
        for i, probe in enumerate(self.probes):
            if vocabulary is not None:
                try:
                    probe.bind(vocabulary)
                except ProbeError as err:
                    raise ProbeError(f"{self._label(i, probe)}: {err}") from err

    def check_roles(self, have: set[str], advice: str = "drop the probe for this corpus") -> None:
        """Refuse (ProbeError naming it) the first probe that needs a role outside ``have``.

        Args:
            have: the role names the corpus (or model) offers.
            advice: what the user can do, ending the message.
        """
        for i, probe in enumerate(self.probes):
            missing = [r for r in probe.required_roles() if r not in have]
            if missing:
                raise ProbeError(f"{self._label(i, probe)}: needs the corpus roles {missing}, which this corpus does "
                                 f"not have (it has: {', '.join(sorted(have)) or 'no vocabulary'}); {advice}")

    def validate(self, model: torch.nn.Module) -> None:
        """Check every probe against ``model`` (bad layer/k/ids/context -> ProbeError naming the argument).

        Args:
            model: the HF causal LM the probes will run on.
        """
        adapter = ModelAdapter.from_model(model)
        for i, probe in enumerate(self.probes):
            try:
                probe.validate(adapter)
            except ProbeError as err:
                raise ProbeError(f"{self.where}[{i}] ({type(probe).__name__}): {err}") from err

    # ----------------------------------------------------------------------------- running
    def run(self, model: torch.nn.Module, step: int, tokens: int | torch.Tensor | None = None,
            heldout: torch.Tensor | None = None, distributed: bool = False) -> dict:
        """Run all probes on ``model`` and return the probe document (every rank gets the whole document).

        Args:
            model: the HF causal LM (not a DDP wrapper: probes must not trigger gradient-sync hooks).
            step: global step recorded in the document.
            tokens: training tokens seen so far (tensor or int), None when unknown.
            heldout: held-out windows [n, T] for probes that need natural text, or None.
            distributed: shard probes over the initialised process group and gather (all ranks must call).
        """
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        heldout = heldout.to(next(model.parameters()).device) if heldout is not None else None
        mine = []  # (probe index, result or None, error text or None, seconds)
        with probe_context(model):
            for i, probe in enumerate(self.probes):
                if i % world != rank:
                    continue
                t0 = time.perf_counter()
                try:
                    result, error = to_jsonable(probe.run(model, heldout=heldout)), None
                except Exception as err:  # re-raised below on every rank, after the collective
                    if not distributed:
                        raise
                    result, error = None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
                mine.append((i, result, error, time.perf_counter() - t0))
        gathered = [mine]
        if distributed:
            gathered = [None] * world
            dist.all_gather_object(gathered, mine)
        entries = sorted((e for part in gathered for e in part), key=lambda e: e[0])
        failed = [(self.probes[i].name, err) for i, _, err, _ in entries if err is not None]
        if failed:
            name, err = failed[0]
            raise RuntimeError(f"probe {name!r} failed at step {step} (on another rank if not shown above): {err}")
        results = {self.probes[i].name: res for i, res, _, _ in entries}
        return self.assemble(step, tokens, results, {self.probes[i].name: s for i, _, _, s in entries})

    def assemble(self, step: int, tokens: Any, results: dict[str, Any], seconds: dict[str, float]) -> dict:
        """Build the probe document (docs/probes_json.md) from per-probe results.

        Args:
            step: the global step.
            tokens: training tokens seen (int, tensor or None).
            results: probe name -> fragment.
            seconds: probe name -> wall time.
        """
        if isinstance(tokens, torch.Tensor):
            tokens = int(tokens.item())
        doc: dict[str, Any] = {"step": int(step), "tokens": None if tokens is None else int(tokens)}
        for probe in self.probes:  # configured order, independent of which rank ran what
            if probe.name in results:
                merge_fragment(doc, probe.name, results[probe.name])
        doc["probe_seconds"] = {k: round(v, 4) for k, v in seconds.items()}
        return doc

    def results_from_document(self, doc: dict) -> dict[str, Any]:
        """Per-probe results read back from a probe document (for re-logging a finished sweep).

        Args:
            doc: a probe document.
        """
        out = {p.name: extract_fragment(doc, p.name) for p in self.probes}
        return {k: v for k, v in out.items() if v is not None}

    @staticmethod
    def write(doc: dict, path: Path) -> None:
        """Write a probe document atomically (rank 0's job).

        Args:
            doc: the document.
            path: the JSON file.
        """
        atomic_write_json(Path(path), doc)

    # ----------------------------------------------------------------------------- logging
    def log(self, doc: dict, loggers: Sequence[Any]) -> None:
        """Log a probe document at its step: scalars to every logger, heatmaps (and the layer x step
        heatmaps grown by every document logged so far) as images.

        Args:
            doc: a probe document (from ``run`` or read back from disk).
            loggers: Lightning loggers (any ``Logger``; images per ``heatmaps.log_images``).
        """
        step, results = int(doc["step"]), self.results_from_document(doc)
        scalars: dict[str, float] = {}
        images: dict[str, np.ndarray] = {}
        for probe in self.probes:
            if probe.name not in results:
                continue
            res = results[probe.name]
            scalars.update({_tag(k): float(v) for k, v in probe.scalars(res).items()})
            for name, column in probe.step_columns(res).items():
                self.columns.setdefault(name, {})[step] = [float(x) for x in np.asarray(column).ravel()]
            images.update({name: np.asarray(m, dtype=float) for name, m in probe.heatmaps(res).items()})
        for logger in loggers:
            if scalars:
                logger.log_metrics(scalars, step=step)
        if self.log_images and loggers:
            log_images(loggers, {_tag(f"images/{n}"): m for n, m in images.items()},
                       {_tag(f"images/{n}"): cols for n, cols in self.columns.items()}, step)

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The growing heatmap columns (JSON-friendly: string step keys)."""
        return {"columns": {n: {str(s): c for s, c in cols.items()} for n, cols in self.columns.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved.

        Args:
            state_dict: the output of ``state_dict``.
        """
        self.columns = {n: {int(s): list(c) for s, c in cols.items()} for n, cols in state_dict["columns"].items()}
