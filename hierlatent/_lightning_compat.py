"""The only place hierlatent touches private Lightning (and torch SummaryWriter) names.

Every other module uses public API; what has no public equivalent is wrapped here, each wrapper saying why.
``tests/test_lightning_compat.py`` checks every name used below against the installed Lightning (one test
per name), so an upgrade that renames or removes one fails there, naming it, instead of silently changing
behaviour. Tested range: see ``pyproject.toml`` and README's Development section (``.ci/versions`` runs the
lowest and the highest version of it).
"""

from __future__ import annotations

import inspect
from typing import Any

import docstring_parser
from jsonargparse import class_from_function
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_summary import model_summary as _summary


class SubcommandCLI(LightningCLI):
    """``LightningCLI`` whose subcommands may be any ``Trainer`` method, hyphenated names and no model/data included.

    Why private: LightningCLI builds its sub-parsers in ``_add_subcommands`` and runs them in ``_run_subcommand``,
    both assuming every subcommand is spelled as its Trainer method and takes a model and a data module; no
    public hook adds a subcommand of another shape. ``_parse_ckpt_path`` (not in 2.5.0, in 2.6) would replace the
    configured model by a checkpoint's hyper-parameters; hierlatent refuses a checkpoint of another model instead.
    """

    #: subcommands with model and data sections, run by Lightning's own plumbing
    model_subcommands: tuple[str, ...] = ("fit", "validate", "test", "predict")

    def subcommand_parser(self, subcommand: str | None) -> LightningArgumentParser | None:
        """The sub-parser of ``subcommand`` (None before parsing or for an unknown name).

        Args:
            subcommand: a subcommand name as typed.
        """
        return getattr(self, "_subcommand_parsers", {}).get(subcommand or "")

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}  # read by LightningCLI._parser
        parser_subcommands = parser.add_subcommands()
        trainer_class = self.trainer_class if isinstance(self.trainer_class, type) else class_from_function(self.trainer_class)
        for subcommand, skip in self.subcommands().items():
            method = subcommand.replace("-", "_")
            sub_kwargs = dict(kwargs.get(subcommand, {}))
            sub_kwargs.setdefault("description", short_description(getattr(trainer_class, method)))
            sub_parser = self.init_parser(**sub_kwargs)
            if subcommand in self.model_subcommands:
                self._add_arguments(sub_parser)
            else:
                self.add_default_arguments_to_parser(sub_parser)
                sub_parser.add_lightning_class_args(self.trainer_class, "trainer")
                sub_parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})
            added = sub_parser.add_method_arguments(trainer_class, method, skip=set(skip))
            self._subcommand_method_arguments[subcommand] = added
            self._subcommand_parsers[subcommand] = sub_parser
            parser_subcommands.add_subcommand(subcommand, sub_parser, help=sub_kwargs["description"])

    def instantiate_classes(self) -> None:
        if self.subcommand in self.model_subcommands or self.subcommand is None:
            super().instantiate_classes()
            return
        self.config_init = self.parser.instantiate_classes(self.config)  # a trainer-only subcommand: no model
        self.model = self.datamodule = None
        self.trainer = self.instantiate_trainer()

    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand in self.model_subcommands:
            super()._run_subcommand(subcommand)
            return
        args = self._subcommand_method_arguments[subcommand]
        kwargs = {k: v for k, v in self.config_init[subcommand].items() if k in args}
        getattr(self.trainer, subcommand.replace("-", "_"))(**kwargs)

    def _parse_ckpt_path(self) -> None:
        return  # see the class docstring: the configured model stands, a mismatching checkpoint is refused


def short_description(fn: Any) -> str | None:
    """The first line of ``fn``'s docstring, as LightningCLI describes a subcommand (public docstring_parser)."""
    doc = inspect.getdoc(fn)
    return docstring_parser.parse(doc).short_description if doc else None


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` with public hooks after each checkpoint file is written or deleted, and a save-now call.

    Why private: ``ModelCheckpoint`` writes through ``_save_checkpoint`` and deletes (top-k retention) through
    ``_remove_checkpoint``; no public callback hook runs after a file is written (``on_save_checkpoint`` runs
    before, for every dump) or when retention deletes one. A save off the schedule (the final weights) needs
    ``_monitor_candidates``, ``_save_topk_checkpoint`` and ``_save_last_checkpoint`` so top-k retention counts
    it; the step schedule resolved after the restore (``every_fraction``) is ``_every_n_train_steps``.
    """

    def checkpoint_saved(self, trainer: Trainer, filepath: str, last: bool) -> None:
        """Called on every rank after ``filepath`` was written (override).

        Args:
            trainer: the running trainer.
            filepath: the checkpoint file.
            last: whether it is the ``last`` checkpoint (Lightning 2.4 and 2.5.0 write one at every epoch end).
        """

    def checkpoint_removed(self, trainer: Trainer, filepath: str) -> None:
        """Called on every rank after top-k retention deleted ``filepath`` (override).

        Args:
            trainer: the running trainer.
            filepath: the deleted checkpoint file.
        """

    def set_every_n_train_steps(self, steps: int) -> None:
        """Save every ``steps`` optimizer steps from now on (a schedule known only once training starts).

        Args:
            steps: optimizer steps between saves (>= 1).
        """
        self._every_n_train_steps = steps

    #: global step of the newest checkpoint file other than ``last`` (None before the first)
    top_k_saved_step: int | None = None

    def save_now(self, trainer: Trainer) -> None:
        """Save a top-k and a last checkpoint at this step unless a top-k one was saved at it (every rank calls).

        Whether one was is tracked here: Lightning 2.4 and 2.5.0 write ``last.ckpt`` at every epoch end, so their own
        "saved at this step" marker does not say whether the step has its top-k file.

        Args:
            trainer: the running trainer.
        """
        if trainer.sanity_checking or trainer.fast_dev_run or trainer.state.fn != "fit":
            return
        if self.top_k_saved_step != trainer.global_step:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)  # after the top-k file, so last records it

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        last = filepath == self.last_model_path  # _save_last_checkpoint sets last_model_path before it saves
        if not last:
            self.top_k_saved_step = trainer.global_step
        self.checkpoint_saved(trainer, filepath, last)

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)
        self.checkpoint_removed(trainer, filepath)


def checkpoint_dir(callback: ModelCheckpoint, trainer: Trainer) -> str:
    """The directory ``callback`` writes to, also before its ``setup`` resolved ``dirpath``.

    Why private: ``ModelCheckpoint.__resolve_ckpt_dir`` (name-mangled) is the rule Lightning itself uses to find
    ``last`` checkpoints; copying it would drift from the version installed.

    Args:
        callback: a checkpoint callback of ``trainer``.
        trainer: the configured trainer.
    """
    return str(callback._ModelCheckpoint__resolve_ckpt_dir(trainer))


def last_checkpoints(callback: ModelCheckpoint, trainer: Trainer) -> set[str]:
    """The ``last*.ckpt`` files of ``callback``, found as Lightning's ``--ckpt_path last`` finds them.

    Why private: ``ModelCheckpoint._find_last_checkpoints`` is that search; there is no public one.

    Args:
        callback: a checkpoint callback of ``trainer``.
        trainer: the configured trainer.
    """
    return set(callback._find_last_checkpoints(trainer))


def writer_is_open(logger: Any) -> bool:
    """Whether a TensorBoard logger has created its ``SummaryWriter`` (``logger.experiment`` would create one).

    Why private: the writer is created lazily into ``_experiment``; reading ``experiment`` creates it.

    Args:
        logger: any logger (False for one that is not a ``TensorBoardLogger``).
    """
    return isinstance(logger, TensorBoardLogger) and logger._experiment is not None


def reopen_writer(logger: TensorBoardLogger, purge_step: int) -> None:
    """Make the logger's next ``SummaryWriter`` start with a purge marker at ``purge_step``, closing an open one.

    Why private: ``SummaryWriter(purge_step=...)`` only acts when a writer is created; the logger keeps the
    writer's arguments in ``_kwargs`` and the writer in ``_experiment``, with no public way to recreate it.

    Args:
        logger: the TensorBoard logger.
        purge_step: events at steps >= it written by earlier writers are hidden.
    """
    logger._kwargs["purge_step"] = int(purge_step)
    if logger._experiment is not None:
        logger._experiment.flush()
        logger._experiment.close()
        logger._experiment = None


def file_writer(writer: Any) -> Any:
    """The ``FileWriter`` of a torch ``SummaryWriter``, to add raw summaries (the HPARAMS session protos).

    Why private: ``SummaryWriter.add_hparams`` would write into a new sub-run directory; torch and Lightning
    write the session protos through ``_get_file_writer()``, which also reopens a closed writer.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
    """
    return writer._get_file_writer()


def summary_table(total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes: dict[str, int], total_flops: int, *columns: tuple[str, list[str]]) -> str:
    """Lightning's model-summary table text (the ``ModelSummary`` callback logs it; hierlatent prints it).

    Why private: ``_format_summary_table`` is the only formatter; ``ModelSummary.summarize`` logs instead of
    returning it. Lightning 2.5.0 takes no ``total_flops`` (2.6 does).

    Args:
        total_parameters: parameters of the model.
        trainable_parameters: of which trainable.
        model_size: size in MB.
        total_training_modes: ``{"train": n, "eval": m}`` module counts.
        total_flops: Lightning's FLOPs estimate (0 without an example input).
        columns: ``(header, cells)`` per column.
    """
    fmt = _summary._format_summary_table
    if "total_flops" in inspect.signature(fmt).parameters:
        return fmt(total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *columns)
    return fmt(total_parameters, trainable_parameters, model_size, total_training_modes, *columns)
