"""The ``hierlatent`` command's Trainer subcommands ``fit validate test predict generate probe-olmo`` (LightningCLI).

Every check of user input runs before any corpus is generated or any step is taken, and a bad value
ends in one line ``error: <message naming the flag>`` on stderr with exit status 2 (``main``).
"""

from __future__ import annotations

import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningArgumentParser

from hierlatent._lightning_compat import SubcommandCLI
from hierlatent.callbacks.checkpoint import HFCheckpoint
from hierlatent.commands import LIGHT_SUBCOMMANDS, light_main  # noqa: F401  (the table lives where no torch is imported)
from hierlatent.cli_checks import (
    check_ckpt_path, check_config_files, check_trainer_args, parser_error_line, silence_noise, subcommand_of,
    user_error_in,
)
from hierlatent.cli_report import fit_callbacks, print_start, print_summary
from hierlatent.data import CorpusDataModule
from hierlatent.data.windows import CLI_FLAGS, check_fills
from hierlatent.errors import CheckpointError, ConfigError, HierlatentError
from hierlatent.events import EVENT_GLOB
from hierlatent.model import check_model_shape
from hierlatent.module import LanguageModel
from hierlatent.resume import newest_intact, start_afresh
from hierlatent.trainer import HierlatentTrainer

#: model hyper-parameters that fix the weight shapes: a checkpoint must agree on all of them
SHAPE_KEYS = ("architecture", "vocab_size", "n_layers", "d_model", "n_heads", "d_mlp", "context_window", "tie_embeddings")
#: trainer subcommands that take a model and a data module
MODEL_SUBCOMMANDS = ("fit", "validate", "test", "predict", "generate")
DEFAULT_LOGGER = {
    "class_path": "hierlatent.trainer.ResumableTensorBoardLogger",
    "init_args": {"save_dir": "runs", "name": "hierlatent", "version": "run"},
}


class HierlatentCLI(SubcommandCLI):
    """LightningCLI over ``LanguageModel``, ``CorpusDataModule`` and ``HierlatentTrainer``."""

    model_subcommands = MODEL_SUBCOMMANDS

    def __init__(self, args: Any = None, run: bool = True) -> None:
        """
        Args:
            args: command-line arguments (default: ``sys.argv[1:]``).
            run: run the subcommand after parsing.
        """
        super().__init__(
            LanguageModel, CorpusDataModule, trainer_class=HierlatentTrainer,
            save_config_kwargs={"overwrite": True},  # a resumed run rewrites its config.yaml
            trainer_defaults={"logger": DEFAULT_LOGGER, "log_every_n_steps": 10},
            seed_everything_default=0, auto_configure_optimizers=False, args=args, run=run,
        )

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # no abbreviated flags (--model.n_lay must not set n_layers); errors raise so main prints one line
        kwargs.update(allow_abbrev=False, exit_on_error=False)
        return super().init_parser(**kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        skip = {"model", "dataloaders", "datamodule"}
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": skip, "test": skip, "predict": skip,
            "generate": {"model", "datamodule"},
            "probe-olmo": set(),
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(HFCheckpoint, "checkpoint")
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("model.context_window", "data.context_window")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as exc:  # one line naming the key; an unknown flag gets the closest known one
            argv = list(sys.argv[1:] if args is None else args)
            sub = self.subcommand_parser(subcommand_of(argv))
            options = [o for a in getattr(sub, "_actions", []) for o in a.option_strings if o.startswith("--")]
            raise ConfigError(parser_error_line(exc, argv, options)) from None

    # -- validation before anything expensive ---------------------------------------------------
    def before_instantiate_classes(self) -> None:
        if self.subcommand not in MODEL_SUBCOMMANDS:
            return
        cfg = self.config[self.subcommand]
        m = cfg.model
        # the fields the config fixes, now (vocab_size comes from the corpus at instantiation and is checked then,
        # once, by build_causal_lm). build_causal_lm checks these again for Python callers, but dropping this
        # check would report them later and under the wrong flag: data.context_window is linked from
        # model.context_window and the data module, instantiated first, would name data.context_window
        check_model_shape(m.architecture, m.n_layers, m.d_model, m.n_heads, m.d_mlp, m.context_window, m.rope_theta)
        _check_accelerator(self.subcommand, cfg.trainer)
        if cfg.trainer.get("precision") is None:
            cfg.trainer.precision = _default_precision(cfg.trainer.get("accelerator"))
        check_trainer_args(cfg.trainer)
        check_ckpt_path(cfg.get("ckpt_path"))
        _drop_inherited_run_names(cfg.trainer.get("logger"))

    def after_instantiate_classes(self) -> None:
        # probes checked against the built model (vocab_size comes from the generator's vocabulary, no
        # generation) before prepare_data: a Hydra k beyond the layers must not wait for the corpus
        if self.subcommand in MODEL_SUBCOMMANDS and self.subcommand != "generate":
            for callback in self.trainer.callbacks:
                if hasattr(callback, "validate") and hasattr(callback, "probes"):
                    callback.bind_datamodule(self.datamodule)  # roles first: probes read ids from them
                    callback.validate(self.model.model)

    def before_fit(self) -> None:
        self._check_run()
        if self.trainer.is_global_zero:  # rank 0 only, nothing collective (logger.log_dir does not broadcast)
            print_start(self.trainer, self.datamodule)

    def after_fit(self) -> None:
        if self.trainer.is_global_zero:
            print_summary(self.trainer, self.model, self.datamodule)

    def instantiate_trainer(self, **kwargs: Any) -> HierlatentTrainer:
        if self.subcommand == "fit" and "callbacks" not in kwargs:
            # fit's own callbacks after the configured ones (Lightning appends --checkpoint's callback to them)
            config = {**self.config_init["fit"].get("trainer", {}), **kwargs}
            own = config.get("callbacks") or []
            kwargs["callbacks"] = [*(own if isinstance(own, list) else [own]), *fit_callbacks(config)]
        return super().instantiate_trainer(**kwargs)

    def before_validate(self) -> None:
        self._check_run()

    def before_test(self) -> None:
        self._check_run()

    def before_predict(self) -> None:
        self._check_run()

    def before_generate(self) -> None:
        _check_corpus_fills(self.model, self.datamodule, 1)

    def _check_run(self) -> None:
        trainer, model, dm = self.trainer, self.model, self.datamodule
        world = max(1, trainer.num_nodes * trainer.num_devices)
        _check_corpus_fills(model, dm, world)
        ckpt = self.config[self.subcommand].get("ckpt_path")
        path = _resolve_ckpt(trainer, ckpt)
        if ckpt == "last":  # Lightning loads the file chosen here (newest intact), or starts afresh without one
            self.config_init[self.subcommand]["ckpt_path"] = None if path is None else str(path)
        if path is not None:
            _check_ckpt_matches(path, model)
        elif self.subcommand == "fit" and trainer.is_global_zero and getattr(trainer.logger, "log_dir", None):
            # a run directory to guard (TensorBoard, CSV); W&B and MLflow loggers have none (log_dir None)
            log_dir = Path(trainer.logger.log_dir)
            events = sorted(log_dir.glob(EVENT_GLOB))
            if events and ckpt == "last":
                start_afresh(trainer.logger, log_dir, events)
            elif events:
                raise ConfigError(
                    f"--trainer.logger.init_args.version: run directory {log_dir} already holds a run; resume it with"
                    " --ckpt_path last or choose another --trainer.logger.init_args.version"
                )


def _drop_inherited_run_names(logger: Any) -> None:
    """Give a logger other than TensorBoard's or CSV's its own ``name``/``version`` defaults, not DEFAULT_LOGGER's.

    jsonargparse carries the default logger's init_args over to any ``--trainer.logger`` class that takes the
    same parameters, so a WandbLogger would get version "run" as its W&B run id: every run of a project one W&B
    run, with one checkpoint directory. A value equal to DEFAULT_LOGGER's is taken for carried over.

    Args:
        logger: the ``trainer.logger`` config (a class_path/init_args namespace, a list of them, or a bool).
    """
    import importlib
    import inspect

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    for item in logger if isinstance(logger, list) else [logger]:
        class_path, init_args = getattr(item, "class_path", None), getattr(item, "init_args", None)
        if not isinstance(class_path, str) or init_args is None:
            continue
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        if issubclass(cls, (TensorBoardLogger, CSVLogger)):
            continue
        params = inspect.signature(cls).parameters
        for key in ("name", "version"):
            if key in params and key in init_args and init_args[key] == DEFAULT_LOGGER["init_args"][key]:
                init_args[key] = params[key].default


def _check_accelerator(subcommand: str, trainer: Any) -> None:
    """``generate`` runs on one CPU whatever the config says; other subcommands asking for absent GPUs get one line.

    Args:
        subcommand: the subcommand being run.
        trainer: its ``trainer`` config section (edited in place for ``generate``).
    """
    if subcommand == "generate":  # builds the corpus only: no accelerator, no process group, no mixed precision
        for key, value in (("accelerator", "cpu"), ("devices", 1), ("num_nodes", 1), ("strategy", "auto"),
                           ("precision", "32-true")):
            trainer[key] = value
        return
    accelerator, devices = str(trainer.get("accelerator")), trainer.get("devices")
    if accelerator not in ("gpu", "cuda"):
        return
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = len(devices) if isinstance(devices, (list, tuple)) else devices if isinstance(devices, int) and devices > 0 else 1
    if have < want:
        found = "no GPU is available" if have == 0 else f"only {have} GPU(s) are available"
        raise ConfigError(
            f"--trainer.accelerator: the config asks for {accelerator} x {devices} (--trainer.devices) but {found} on"
            " this machine; override with --trainer.accelerator cpu --trainer.devices 1 (or fewer --trainer.devices)"
        )


def _default_precision(accelerator: Any) -> str:
    """bf16-mixed on a GPU that supports it (16-mixed otherwise), 32-true on CPU."""
    if torch.cuda.is_available() and str(accelerator) in ("auto", "gpu", "cuda", "None"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _check_corpus_fills(model: LanguageModel, dm: CorpusDataModule, world: int) -> None:
    """The context window must fit the model and the *expected* corpus must fill one batch per rank."""
    T = dm.context_window
    positions = model.hparams.context_window
    if T > positions:
        raise ConfigError(f"--model.context_window: data windows of {T} tokens exceed the model's {positions} positions")
    gen = dm.generator
    check_fills(gen.expected_tokens("train"), gen.expected_tokens("test"), T, world=world, batch_size=dm.batch_size,
                drop_last=dm.drop_last, val_windows=dm.val_windows, expected=True, flags=CLI_FLAGS)


def _resolve_ckpt(trainer: HierlatentTrainer, ckpt: str | None) -> Path | None:
    """The checkpoint file a subcommand will load, or None (``last``: see ``hierlatent.resume.newest_intact``)."""
    if not ckpt or ckpt in ("best", "hpc", "registry"):
        return None
    return newest_intact(trainer) if ckpt == "last" else Path(ckpt)


def _check_ckpt_matches(path: Path, model: LanguageModel) -> None:
    """Refuse a checkpoint whose weight shapes belong to another model (CheckpointError naming --ckpt_path)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 — any unreadable file is the same user error
        raise CheckpointError(f"--ckpt_path: cannot read checkpoint {path}: {exc}") from exc
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hp or "state_dict" not in ckpt:
        raise CheckpointError(f"--ckpt_path: {path} is not a hierlatent training checkpoint (no hyper-parameters/state)")
    for key in SHAPE_KEYS:
        if key in hp and hp[key] != model.hparams.get(key):
            raise CheckpointError(
                f"--ckpt_path: {path} belongs to another model: {key}={hp[key]!r} in the checkpoint,"
                f" {model.hparams.get(key)!r} in this config"
            )
    own = model.state_dict()
    for name, tensor in ckpt["state_dict"].items():
        if name in own and tuple(own[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"--ckpt_path: {path} belongs to another model: {name} has shape {tuple(tensor.shape)}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ``hierlatent <subcommand> ...``; user errors exit 2 with one ``error:`` line.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        status = light_main(args)  # --help, plot, sweep, compare, verify: no LightningCLI
        if status is not None:
            if status:
                sys.exit(status)
            return
        check_config_files(args)
        silence_noise()
        HierlatentCLI(args=None if argv is None else args)
    except HierlatentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ArgumentError as exc:  # jsonargparse (exit_on_error=False): one line naming the key, and a hint
        print(f"error: {parser_error_line(exc, args)}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        user = user_error_in(exc)  # e.g. a probe's constructor raising inside jsonargparse's instantiation
        if user is None:
            raise
        print(f"error: {user}", file=sys.stderr)
        sys.exit(2)
    finally:
        _release_process_group()


def _release_process_group() -> None:
    """Destroy a DDP process group before exit: gloo's threads otherwise race interpreter shutdown and abort."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
