"""``ProbeRunner``: the Lightning callback that decides *when* probes run, runs them, and logs the results.

It holds no probe maths. At a scheduled step it calls every configured ``Probe``'s ``run`` inside the
adapter's ``probe_mode`` (eval, no grads, eager attention, restored afterwards), merges the returned
JSON fragments into one document (docs/probes_json.md), writes ``<log_dir>/probes/step-<N>.json`` on rank
0 and logs scalars and heatmap images. ``probe_model`` is the single entry point, shared with
``hierlatent probe-olmo`` (``hierlatent.olmo.sweep``), so there is one implementation for both paths.

DDP: probes are sharded across ranks (probe i on rank i % world_size) and the fragments are gathered with
``all_gather_object`` that every rank calls. Every rank holds an identical replica of the model and the
probes' stimuli are seeded, so a probe's result does not depend on which rank runs it; sharding turns N
ranks into up to N-fold less probe time instead of N identical copies of the work. Errors are gathered
too and re-raised on every rank, so a failing probe cannot leave the other ranks waiting in a collective.
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger

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


def _tag(key: str) -> str:
    return key if key.startswith("probes/") else f"probes/{key}"


class ProbeRunner(Callback):
    """Run mechanistic probes during training (and for ``probe-olmo``) and log their results.

    Args:
        probes: The probes to run (``hierlatent.probes.*Probe`` instances); each runs once per probe step.
        every_n_steps: Also run every N optimizer steps (None: only at checkpoints / train end).
        on_checkpoint: Run whenever a checkpoint is saved (``on_save_checkpoint``, all ranks).
        on_train_end: Run at the end of training.
        on_train_start: Run once before the first step (the untrained model).
        n_heldout: Number of held-out windows fetched from ``trainer.datamodule.heldout_windows``.
        heldout_seed: Seed of the held-out window selection (``heldout_offsets: random``).
        heldout_offsets: "random" = windows at seeded random offsets of the test split; "first" = its first
            ``n_heldout`` consecutive context-length chunks, as the research code (docs/research.md#stimuli).
        log_images: Log layer x head and layer x step heatmaps when the logger is TensorBoard.
        write_json: Write ``<log_dir>/probes/step-<N>.json`` on rank 0.
    """

    def __init__(
        self,
        probes: list[Probe],
        every_n_steps: int | None = None,
        on_checkpoint: bool = True,
        on_train_end: bool = True,
        on_train_start: bool = False,
        n_heldout: int = 100,
        heldout_seed: int = 0,
        heldout_offsets: Literal["random", "first"] = "random",
        log_images: bool = True,
        write_json: bool = True,
    ) -> None:
        if not probes:
            raise ProbeError("ProbeRunner.probes: give at least one probe")
        if every_n_steps is not None and every_n_steps < 1:
            raise ProbeError(f"ProbeRunner.every_n_steps: must be >= 1 or None, got {every_n_steps}")
        if n_heldout < 0:
            raise ProbeError(f"ProbeRunner.n_heldout: must be >= 0, got {n_heldout}")
        names = [p.name for p in probes]
        if len(set(names)) != len(names):
            raise ProbeError(f"ProbeRunner.probes: probe names must be unique, got {names}")
        self.probes = list(probes)
        self.every_n_steps = every_n_steps
        self.run_on_checkpoint = on_checkpoint
        self.run_on_train_end = on_train_end
        self.run_on_train_start = on_train_start
        self.n_heldout = n_heldout
        self.heldout_seed = heldout_seed
        if heldout_offsets not in ("random", "first"):
            raise ProbeError(f"ProbeRunner.heldout_offsets: must be 'random' or 'first', got {heldout_offsets!r}")
        self.heldout_offsets = heldout_offsets
        self.log_images = log_images
        self.write_json = write_json
        self.columns: dict[str, dict[int, list[float]]] = {}  # growing heatmaps: name -> step -> column
        self.last_step: int | None = None
        self._validated_model: int | None = None
        self._heldout: torch.Tensor | None = None

    # ----------------------------------------------------------------------------- validation / data
    def validate(self, model: torch.nn.Module) -> None:
        """Check every probe against ``model`` (bad layer/k/ids/context -> ProbeError naming the argument)."""
        adapter = ModelAdapter.from_model(model)
        for i, probe in enumerate(self.probes):
            try:
                probe.validate(adapter)
            except ProbeError as err:
                raise ProbeError(f"ProbeRunner.probes[{i}] ({type(probe).__name__}): {err}") from err
        self._validated_model = id(model)

    def bind(self, vocabulary: Any) -> None:
        """Give every probe the corpus vocabulary; refuse a probe whose roles the corpus lacks (names it).

        Args:
            vocabulary: the corpus ``Vocabulary`` (None: no corpus, e.g. a data module without a generator).
        """
        for i, probe in enumerate(self.probes):
            where = f"ProbeRunner.probes[{i}] ({type(probe).__name__}, {probe.name!r})"
            have = set(getattr(vocabulary, "roles", {}) or {})
            missing = [r for r in probe.required_roles() if r not in have]
            if missing:
                raise ProbeError(f"{where}: needs the corpus roles {missing}, which this corpus does not have "
                                 f"(it has: {', '.join(sorted(have)) or 'no vocabulary'}); drop the probe for this corpus")
            if vocabulary is not None:
                try:
                    probe.bind(vocabulary)
                except ProbeError as err:
                    raise ProbeError(f"{where}: {err}") from err

    def bind_datamodule(self, datamodule: Any) -> None:
        """``bind`` the vocabulary of the data module's corpus generator (None when it has none).

        Args:
            datamodule: the fit's data module (``trainer.datamodule``), or None.
        """
        generator = getattr(datamodule, "generator", None)
        self.bind(generator.vocabulary() if hasattr(generator, "vocabulary") else None)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Bind the corpus vocabulary and validate the probes at start-up, before the first step."""
        self.bind_datamodule(getattr(trainer, "datamodule", None))
        if isinstance(getattr(pl_module, "model", None), torch.nn.Module):
            self.validate(pl_module.model)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Validate here when the HF model only exists after ``configure_model``."""
        if self._validated_model != id(pl_module.model):
            self.validate(pl_module.model)

    def _heldout_windows(self, trainer: Trainer) -> torch.Tensor | None:
        if self._heldout is None and self.n_heldout > 0:
            fetch = getattr(trainer.datamodule, "heldout_windows", None)
            if fetch is not None:
                self._heldout = torch.as_tensor(fetch(self.n_heldout, self.heldout_seed, offsets=self.heldout_offsets))
        return self._heldout

    # ----------------------------------------------------------------------------- schedule
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Probe the untrained model when ``on_train_start`` is set."""
        if self.run_on_train_start:
            self._maybe_run(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        """Every ``every_n_steps`` optimizer steps."""
        n = self.every_n_steps
        if n is not None and trainer.global_step > 0 and trainer.global_step % n == 0:
            self._maybe_run(trainer, pl_module)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        """Runs on every rank inside ``trainer.save_checkpoint``, so the gather collective is safe here."""
        if self.run_on_checkpoint and not trainer.sanity_checking:
            self._maybe_run(trainer, pl_module)
            # Lightning stores callback state_dicts *before* this hook: refresh ours so the checkpoint
            # being written already contains this step's heatmap column.
            checkpoint.setdefault("callbacks", {})[self.state_key] = self.state_dict()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Final probe of the trained model."""
        if self.run_on_train_end:
            self._maybe_run(trainer, pl_module)

    def _maybe_run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = trainer.global_step
        if self.last_step == step:  # at most once per global step (checkpoint + every_n + end coincide)
            return
        self.last_step = step
        tokens = getattr(pl_module, "tokens_seen", None)
        json_path = Path(trainer.log_dir) / "probes" / f"step-{step}.json" if trainer.log_dir else None
        self.probe_model(
            pl_module.model,
            step=step,
            tokens=tokens,
            json_path=json_path if self.write_json else None,
            loggers=trainer.loggers,
            heldout=self._heldout_windows(trainer),
            distributed=trainer.world_size > 1,
        )

    # ----------------------------------------------------------------------------- probing
    def probe_model(
        self,
        model: torch.nn.Module,
        step: int,
        tokens: int | torch.Tensor | None = None,
        json_path: Path | None = None,
        loggers: Sequence[Logger] = (),
        heldout: torch.Tensor | None = None,
        distributed: bool = False,
    ) -> dict:
        """Run all probes on ``model`` and return the probe document (also written/logged on rank 0).

        Args:
            model: The HF causal LM (not a DDP wrapper: probes must not trigger gradient-sync hooks).
            step: Global step recorded in the document and used as the logging step.
            tokens: Training tokens seen so far (tensor or int), None when unknown.
            json_path: Where rank 0 writes the document atomically (None: do not write).
            loggers: Loggers receiving scalars and (TensorBoard) images on rank 0.
            heldout: Held-out windows [n, T] for probes that need natural text, or None.
            distributed: Shard probes over the initialised process group and gather (all ranks must call).
        """
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        device = next(model.parameters()).device
        heldout = heldout.to(device) if heldout is not None else None
        mine = []  # (probe index, result or None, error text or None, seconds)
        with probe_context(model):
            for i, probe in enumerate(self.probes):
                if i % world != rank:
                    continue
                t0 = time.perf_counter()
                try:
                    mine.append((i, to_jsonable(probe.run(model, heldout=heldout)), None, 0.0))
                except Exception as err:  # re-raised below on every rank, after the collective
                    if not distributed:
                        raise
                    mine.append((i, None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}", 0.0))
                mine[-1] = (*mine[-1][:3], time.perf_counter() - t0)
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
        doc = self.assemble(step, tokens, results, {self.probes[i].name: s for i, _, _, s in entries})
        if rank == 0:
            if json_path is not None:
                atomic_write_json(json_path, doc)
            self.log_results(results, step, loggers)
        return doc

    def assemble(self, step: int, tokens: Any, results: dict[str, Any], seconds: dict[str, float]) -> dict:
        """Build the probe document (docs/probes_json.md) from per-probe results."""
        if isinstance(tokens, torch.Tensor):
            tokens = int(tokens.item())
        doc: dict[str, Any] = {"step": int(step), "tokens": None if tokens is None else int(tokens)}
        for probe in self.probes:  # configured order, independent of which rank ran what
            if probe.name in results:
                merge_fragment(doc, probe.name, results[probe.name])
        doc["probe_seconds"] = {k: round(v, 4) for k, v in seconds.items()}
        return doc

    def results_from_document(self, doc: dict) -> dict[str, Any]:
        """Per-probe results read back from a probe document (for re-logging a finished sweep)."""
        out = {p.name: extract_fragment(doc, p.name) for p in self.probes}
        return {k: v for k, v in out.items() if v is not None}

    # ----------------------------------------------------------------------------- logging
    def log_results(self, results: dict[str, Any], step: int, loggers: Sequence[Logger]) -> None:
        """Scalars to every logger; per-step and growing layer x step heatmaps to TensorBoard loggers."""
        scalars: dict[str, float] = {}
        images: dict[str, np.ndarray] = {}
        for probe in self.probes:
            if probe.name not in results:
                continue
            res = results[probe.name]
            scalars.update({_tag(k): float(v) for k, v in probe.scalars(res).items()})
            for name, column in probe.step_columns(res).items():
                self.columns.setdefault(name, {})[int(step)] = [float(x) for x in np.asarray(column).ravel()]
            if self.log_images:
                images.update({name: np.asarray(m, dtype=float) for name, m in probe.heatmaps(res).items()})
        for logger in loggers:
            if scalars:
                logger.log_metrics(scalars, step=step)
        tensorboards = [lg for lg in loggers if isinstance(lg, TensorBoardLogger)]
        if not (self.log_images and tensorboards):
            return
        from hierlatent.callbacks.heatmaps import heatmap_image

        rendered = {n: heatmap_image(m, f"{n} @ step {step}", "head", "layer") for n, m in images.items()}
        for name, by_step in self.columns.items():
            steps = sorted(by_step)
            matrix = np.array([by_step[s] for s in steps]).T  # [n_steps, L] -> [L, n_steps]
            rendered[name] = heatmap_image(matrix, name, "step", "layer", xticklabels=steps, cmap="magma")
        for logger in tensorboards:
            for name, img in rendered.items():
                logger.experiment.add_image(_tag(f"images/{name}"), img, global_step=step)
            logger.experiment.flush()

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Growing heatmap columns and the last probed step survive a resume."""
        return {"columns": {n: {str(s): c for s, c in cols.items()} for n, cols in self.columns.items()},
                "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""
        self.columns = {n: {int(s): list(c) for s, c in cols.items()} for n, cols in state_dict["columns"].items()}
        self.last_step = state_dict.get("last_step")
