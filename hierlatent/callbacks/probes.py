"""``ProbeRunner``: the Lightning callback that decides *when* the probes run during ``fit``.

Everything else lives in its ``ProbeSuite`` (``hierlatent.callbacks.suite``): binding the corpus
vocabulary, validating against the model, running the probes, assembling the document
(docs/probes_json.md) and logging it. The callback binds the data module's corpus vocabulary at ``setup``,
fetches the held-out windows once from the data module, and at a scheduled step has the suite run, writes
``<log_dir>/probes/step-<N>.json`` on rank 0 and logs through the trainer's loggers. ``probe-olmo`` uses
the suite directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from hierlatent.callbacks.suite import ProbeSuite, probe_context, to_jsonable  # noqa: F401  (re-exported)
from hierlatent.corpora.base import Vocabulary
from hierlatent.documents import extract_fragment, merge_fragment  # noqa: F401  (re-exported)
from hierlatent.errors import ProbeError
from hierlatent.probes.base import Probe


class ProbeRunner(Callback):
    """Run mechanistic probes during training and log their results.

    Args:
        probes: The probes to run (``hierlatent.probes.*Probe`` instances); each runs once per probe step.
            Probes compose by name: a later probe replaces an earlier one of the same name, so a preset
            given after a config with ``probes+:`` replaces that config's probes of the same names and
            adds the others, whatever the order of the lists.
        every_n_steps: Also run every N optimizer steps (None: only at checkpoints / train end).
        on_checkpoint: Run whenever a checkpoint is saved (``on_save_checkpoint``, all ranks).
        on_train_end: Run at the end of training.
        on_train_start: Run once before the first step (the untrained model).
        n_heldout: Number of held-out windows fetched from ``trainer.datamodule.heldout_windows``.
        heldout_seed: Seed of the held-out window selection (``heldout_offsets: random``).
        heldout_offsets: "random" = windows at seeded random offsets of the test split; "first" = its first
            ``n_heldout`` consecutive context-length chunks, as the research code (docs/research.md#stimuli).
        log_images: Log layer x head and layer x step heatmaps as images (to every logger that takes them).
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
        if every_n_steps is not None and every_n_steps < 1:
            raise ProbeError(f"ProbeRunner.every_n_steps: must be >= 1 or None, got {every_n_steps}")
        if n_heldout < 0:
            raise ProbeError(f"ProbeRunner.n_heldout: must be >= 0, got {n_heldout}")
        if heldout_offsets not in ("random", "first"):
            raise ProbeError(f"ProbeRunner.heldout_offsets: must be 'random' or 'first', got {heldout_offsets!r}")
        self.suite = ProbeSuite(probes, log_images=log_images, where="ProbeRunner.probes")
        self.every_n_steps = every_n_steps
        self.run_on_checkpoint = on_checkpoint
        self.run_on_train_end = on_train_end
        self.run_on_train_start = on_train_start
        self.n_heldout, self.heldout_seed, self.heldout_offsets = n_heldout, heldout_seed, heldout_offsets
        self.log_images, self.write_json = log_images, write_json
        self.last_step: int | None = None
        self._validated_model: int | None = None
        self._heldout: torch.Tensor | None = None

    @property
    def probes(self) -> list[Probe]:
        """The suite's probes (composed by name)."""
        return self.suite.probes

    @property
    def columns(self) -> dict[str, dict[int, list[float]]]:
        """The suite's growing layer x step heatmap columns."""
        return self.suite.columns

    # ----------------------------------------------------------------------------- start-up
    def bind(self, vocabulary: Vocabulary | None) -> None:
        """``ProbeSuite.bind``: give the probes the corpus vocabulary, refusing a probe whose roles it lacks.

        Args:
            vocabulary: the corpus ``Vocabulary`` (None: no corpus).
        """
        self.suite.bind(vocabulary)

    def bind_datamodule(self, datamodule: Any) -> None:
        """``bind`` the vocabulary of the data module's corpus generator (None when it has none).

        Args:
            datamodule: the fit's data module (``trainer.datamodule``), or None.
        """
        generator = getattr(datamodule, "generator", None)
        self.bind(generator.vocabulary() if hasattr(generator, "vocabulary") else None)

    def validate(self, model: torch.nn.Module) -> None:
        """``ProbeSuite.validate`` against ``model`` (ProbeError naming the probe and argument).

        Args:
            model: the HF causal LM.
        """
        self.suite.validate(model)
        self._validated_model = id(model)

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
        json_path = Path(trainer.log_dir) / "probes" / f"step-{step}.json" if trainer.log_dir else None
        self.probe_model(pl_module.model, step=step, tokens=getattr(pl_module, "tokens_seen", None),
                         json_path=json_path if self.write_json else None, loggers=trainer.loggers,
                         heldout=self._heldout_windows(trainer), distributed=trainer.world_size > 1)

    def probe_model(self, model: torch.nn.Module, step: int, tokens: int | torch.Tensor | None = None,
                    json_path: Path | None = None, loggers: Any = (), heldout: torch.Tensor | None = None,
                    distributed: bool = False) -> dict:
        """One probe step: the suite runs (all ranks), rank 0 writes ``json_path`` and logs; the document.

        Args:
            model: The HF causal LM (not a DDP wrapper).
            step: Global step recorded in the document and used as the logging step.
            tokens: Training tokens seen so far (tensor or int), None when unknown.
            json_path: Where rank 0 writes the document atomically (None: do not write).
            loggers: Loggers receiving scalars and images on rank 0.
            heldout: Held-out windows [n, T] for probes that need natural text, or None.
            distributed: Shard probes over the initialised process group and gather (all ranks must call).
        """
        doc = self.suite.run(model, step, tokens=tokens, heldout=heldout, distributed=distributed)
        if not distributed or torch.distributed.get_rank() == 0:
            if json_path is not None:
                self.suite.write(doc, json_path)
            self.suite.log(doc, loggers)
        return doc

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Growing heatmap columns and the last probed step survive a resume."""
        return {**self.suite.state_dict(), "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved."""
        self.suite.load_state_dict(state_dict)
        self.last_step = state_dict.get("last_step")
