"""Every private Lightning (and SummaryWriter) name ``hierlatent/_lightning_compat.py`` relies on, one test each.

An upgrade that renames, removes or changes one fails here, naming it, instead of silently changing what
hierlatent does; ``.ci/versions`` runs this file against the lowest and the highest supported Lightning. The
last tests check that the public rules hierlatent computes itself still agree with the private ones they
replaced (the logging step, the compute dtype).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import TensorBoardLogger

from hierlatent import _lightning_compat as compat
from hierlatent.module import compute_dtype, is_logging_step


def _params(fn) -> list[str]:
    return [n for n in inspect.signature(fn).parameters if n != "self"]


def _trainer(tmp_path: Path, callbacks: list, **kwargs) -> L.Trainer:
    kwargs = {"max_steps": 7, "limit_val_batches": 0, "log_every_n_steps": 3, **kwargs}
    return L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, callbacks=callbacks,
                     enable_progress_bar=False, enable_model_summary=False, **kwargs)


# -- LightningCLI: _add_subcommands, _add_arguments, _subcommand_method_arguments, _subcommand_parsers,
#    _run_subcommand, _parse_ckpt_path -------------------------------------------------------------------
class Stop(Exception):
    """Raised by ``before_fit`` so the fit subcommand is parsed and instantiated but does not train."""


class _Trainer(L.Trainer):
    def say_hello(self, name: str = "world") -> None:
        """Greets (a trainer-only test subcommand)."""
        self.greeted = name


class _Model(BoringModel):
    def __init__(self, width: int = 3) -> None:
        """
        Args:
            width: a hyper-parameter a checkpoint may disagree on.
        """
        super().__init__()
        self.width = width
        self.save_hyperparameters()


class MiniCLI(compat.SubcommandCLI):
    """The smallest SubcommandCLI: ``fit`` plus the hyphenated, model-free ``say-hello``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}, "say-hello": set()}

    def before_fit(self) -> None:
        raise Stop


def _mini(args: list[str]) -> MiniCLI:
    return MiniCLI(_Model, trainer_class=_Trainer, args=args, save_config_callback=None,
                   trainer_defaults={"logger": False, "enable_checkpointing": False})


def test_add_subcommands_is_lightnings_subparser_hook():
    assert _params(LightningCLI._add_subcommands) == ["parser", "kwargs"]
    cli = _mini(["say-hello", "--name", "x"])
    assert cli.subcommand_parser("say-hello") is not None and cli.subcommand_parser("fit") is not None


def cli_holder(make) -> MiniCLI:
    """The CLI ``make`` builds, caught at ``before_fit`` (``Stop``), with its config and objects."""
    holder: dict[str, MiniCLI] = {}
    original = MiniCLI.before_fit

    def keep(self: MiniCLI) -> None:
        holder["cli"] = self
        original(self)

    MiniCLI.before_fit = keep
    try:
        with pytest.raises(Stop):
            make()
    finally:
        MiniCLI.before_fit = original
    return holder["cli"]


def test_add_arguments_adds_model_and_trainer_sections():
    assert _params(LightningCLI._add_arguments) == ["parser"]
    cli = cli_holder(lambda: _mini(["fit", "--model.width", "5", "--trainer.max_steps", "2"]))
    assert cli.model.width == 5 and cli.trainer.max_steps == 2


def test_subcommand_method_arguments_records_the_method_flags():
    cli = _mini(["say-hello", "--name", "x"])
    assert isinstance(cli._subcommand_method_arguments, dict)
    assert "name" in cli._subcommand_method_arguments["say-hello"]


def test_subcommand_parsers_is_what_lightning_reads_back():
    cli = _mini(["say-hello"])
    assert cli._parser("say-hello") is cli.subcommand_parser("say-hello")


def test_run_subcommand_runs_the_hyphenated_trainer_method():
    assert _params(LightningCLI._run_subcommand) == ["subcommand"]
    cli = _mini(["say-hello", "--name", "x"])
    assert cli.trainer.greeted == "x" and cli.model is None


def test_parse_ckpt_path_is_disabled(tmp_path):
    ckpt = tmp_path / "other.ckpt"
    torch.save({"hyper_parameters": {"width": 7}, "state_dict": {}}, ckpt)
    cli = cli_holder(lambda: _mini(["fit", "--ckpt_path", str(ckpt)]))
    # the configured model, not the checkpoint's hyper-parameters (a renamed step would apply them)
    assert cli.model.width == 3
    if hasattr(LightningCLI, "_parse_ckpt_path"):  # not in Lightning 2.5.0 (nothing to disable there), in 2.6
        assert _params(LightningCLI._parse_ckpt_path) == []


# -- ModelCheckpoint: _save_checkpoint, _remove_checkpoint, _every_n_train_steps, _monitor_candidates,
#    _save_topk_checkpoint, _save_last_checkpoint ------------------------------------------------------------
class Recording(compat.StepCheckpoint):
    """Records the public hooks; saves every 2 steps, every 3 from the start of training, keeps 2 top-k files."""

    def __init__(self, dirpath: str) -> None:
        super().__init__(dirpath=dirpath, filename="{step}", monitor="step", mode="max", save_top_k=2,
                         save_last=True, every_n_train_steps=2)
        self.events: list[tuple[str, str, int]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.set_every_n_train_steps(3)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save_now(trainer)  # step 7 is off the schedule
        self.save_now(trainer)  # already saved at this step: nothing

    def checkpoint_saved(self, trainer: L.Trainer, filepath: str, last: bool) -> None:
        assert last == (Path(filepath).name == "last.ckpt")
        self.events.append(("saved", Path(filepath).name, trainer.global_step))

    def checkpoint_removed(self, trainer: L.Trainer, filepath: str) -> None:
        self.events.append(("removed", Path(filepath).name, trainer.global_step))


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    cb = Recording(str(root / "checkpoints"))
    trainer = _trainer(root, [cb], logger=False)
    trainer.fit(BoringModel())
    return cb, trainer, root / "checkpoints"


def test_save_checkpoint_runs_the_saved_hook_after_each_file(checkpointed):
    cb, _, folder = checkpointed
    assert _params(ModelCheckpoint._save_checkpoint) == ["trainer", "filepath"]
    saved = [(name, step) for kind, name, step in cb.events if kind == "saved"]
    assert [s for s in saved if s[0] != "last.ckpt"] == [("step=3.ckpt", 3), ("step=6.ckpt", 6), ("step=7.ckpt", 7)]
    for i, (name, step) in enumerate(saved):  # each top-k file is followed by last.ckpt at its step
        assert name == "last.ckpt" or saved[i + 1] == ("last.ckpt", step)
    # (Lightning 2.4 and 2.5.0 also write last.ckpt at every epoch end, with or without a top-k file)


def test_remove_checkpoint_runs_the_removed_hook(checkpointed):
    cb, _, folder = checkpointed
    assert _params(ModelCheckpoint._remove_checkpoint) == ["trainer", "filepath"]
    assert [(n, s) for kind, n, s in cb.events if kind == "removed"] == [("step=3.ckpt", 7)]
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=6.ckpt", "step=7.ckpt"]


def test_every_n_train_steps_is_the_schedule(checkpointed):
    cb, _, _ = checkpointed
    assert cb._every_n_train_steps == 3  # and the saves above fell at 3 and 6, not at 2 and 4


def test_save_now_saves_once_per_step(checkpointed):
    cb, trainer, _ = checkpointed
    assert cb.top_k_saved_step == trainer.global_step == 7
    assert sum(1 for kind, name, _ in cb.events if kind == "saved" and name == "step=7.ckpt") == 1


def test_monitor_candidates_holds_the_step(checkpointed):
    cb, trainer, _ = checkpointed
    assert _params(ModelCheckpoint._monitor_candidates) == ["trainer"]
    assert int(cb._monitor_candidates(trainer)["step"]) == 7


def test_save_topk_checkpoint_counts_an_off_schedule_save_in_retention(checkpointed):
    cb, _, folder = checkpointed
    assert _params(ModelCheckpoint._save_topk_checkpoint) == ["trainer", "monitor_candidates"]
    assert {Path(p).name for p in cb.best_k_models} == {"step=6.ckpt", "step=7.ckpt"}


def test_save_last_checkpoint_writes_last_at_the_step(checkpointed):
    _, _, folder = checkpointed
    assert _params(ModelCheckpoint._save_last_checkpoint) == ["trainer", "monitor_candidates"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 7


# -- ModelCheckpoint.__resolve_ckpt_dir, _find_last_checkpoints ---------------------------------------------
def _unsetup(tmp_path: Path) -> tuple[ModelCheckpoint, L.Trainer]:
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="n", version="v")
    cb = ModelCheckpoint()
    return cb, _trainer(tmp_path, [cb], logger=logger)


def test_resolve_ckpt_dir_before_setup(tmp_path):
    cb, trainer = _unsetup(tmp_path)
    assert cb.dirpath is None
    assert Path(compat.checkpoint_dir(cb, trainer)) == tmp_path / "n" / "v" / "checkpoints"


def test_find_last_checkpoints(tmp_path):
    cb, trainer = _unsetup(tmp_path)
    folder = tmp_path / "n" / "v" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("last.ckpt", "last-v1.ckpt", "step=3.ckpt", "last.txt"):
        (folder / name).write_bytes(b"")
    assert {Path(p).name for p in compat.last_checkpoints(cb, trainer)} == {"last.ckpt", "last-v1.ckpt"}


# -- TensorBoardLogger._experiment, _kwargs; SummaryWriter._get_file_writer ---------------------------------
def test_experiment_is_the_lazily_created_writer(tmp_path):
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="n", version="v")
    assert not compat.writer_is_open(logger)
    writer = logger.experiment
    assert compat.writer_is_open(logger) and logger._experiment is writer
    assert not compat.writer_is_open(object())


def test_kwargs_reach_the_next_writer(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="n", version="v")
    first = logger.experiment
    for step in range(10):
        first.add_scalar("x", float(step), step)
    compat.reopen_writer(logger, 5)
    assert not compat.writer_is_open(logger) and first.file_writer is None  # flushed and closed
    logger.experiment.add_scalar("x", 99.0, 5)
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("x")] == [(s, float(s)) for s in range(5)] + [(5, 99.0)]


def test_get_file_writer_adds_raw_summaries(tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import scalar

    writer = SummaryWriter(str(tmp_path))
    writer.close()
    compat.file_writer(writer).add_summary(scalar("x", 1.0), 0)  # reopens the closed writer
    writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))


# -- model_summary._format_summary_table -------------------------------------------------------------------
def test_format_summary_table():
    from lightning.pytorch.utilities.model_summary.model_summary import ModelSummary

    summary = ModelSummary(BoringModel())
    table = compat.summary_table(summary.total_parameters, summary.trainable_parameters, summary.model_size,
                                 summary.total_training_modes, 0, *summary._get_summary_data())
    assert "Total params" in table and "layer" in table and "66" in table  # BoringModel: Linear(32, 2)


# -- public rules that replaced private ones ---------------------------------------------------------------
class _Watch(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool, bool]] = []

    def training_step(self, batch, batch_idx):
        trainer = self.trainer
        self.seen.append((trainer.global_step, is_logging_step(trainer), trainer._logger_connector.should_update_logs))
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("every", [3, 0])
def test_logging_step_agrees_with_lightnings_logger_connector(tmp_path, every):
    model = _Watch()
    _trainer(tmp_path, [], logger=False, log_every_n_steps=every, enable_checkpointing=False).fit(model)
    assert len(model.seen) == 7
    assert [ours for _, ours, _ in model.seen] == [theirs for _, _, theirs in model.seen]
    assert sum(ours for _, ours, _ in model.seen) == (2 if every else 0)  # steps 2 and 5 (counted from 0)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "bf16-true", "16-true", "64-true"])
def test_compute_dtype_agrees_with_lightning(precision):
    from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype

    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, logger=False)
    assert compute_dtype(trainer.precision) == _plugin_to_compute_dtype(trainer.precision_plugin)
