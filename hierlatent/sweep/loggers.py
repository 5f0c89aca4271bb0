"""Which Lightning logger each sweep condition ends up with, read from its YAML and flags (no torch), so a
logger the sweep cannot give a folder of its own per run is refused before any run starts.

A sweep places run (condition, seed) in ``D/<condition>/seed-<s>/`` by setting the logger's ``save_dir``,
``name`` and ``version``. TensorBoard's and CSV's loggers make exactly that folder. W&B's takes ``name`` as a
display name and puts the run in ``<save_dir>/<project>/<version>``, so every condition's seed-s run would
share one folder (and one W&B id) and resume the other's checkpoints; MLflow's has no ``name`` or
``version`` at all. Those (and Comet's and Neptune's, which name runs by their own ids too) are refused
rather than left to mix runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hierlatent.errors import ConfigError
from hierlatent.sweep.spec import Condition

#: Lightning's loggers whose (save_dir, name, version) is not the run's own folder ``save_dir/name/version``
#: (TensorBoard's, CSV's and their subclasses, such as ``hierlatent.trainer.ResumableTensorBoardLogger``, are;
#: a class is told by its name, since the sweep imports no Lightning)
NO_FOLDER_LOGGERS = ("WandbLogger", "MLFlowLogger", "CometLogger", "NeptuneLogger")


def _class_of(value: Any) -> str | None:
    """The logger class a ``trainer.logger`` value names (a class path, ``{class_path: …}`` or a list of
    them, whose first is the one whose folder holds the run); None for true/false/null/anything else."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("class_path")
    return value if isinstance(value, str) else None


def _parse(text: str) -> Any:
    """A flag value as jsonargparse would read it (YAML), or the text itself where it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _from_flags(words: tuple[str, ...] | list[str]) -> str | None:
    """The last ``--trainer.logger[.class_path] X`` (or ``=X``) among command-line words."""
    found = None
    for i, word in enumerate(words):
        for key in ("--trainer.logger", "--trainer.logger.class_path"):
            if word.startswith(key + "="):
                found = _class_of(_parse(word[len(key) + 1:]))
            elif word == key and i + 1 < len(words):
                found = _class_of(_parse(words[i + 1]))
    return found


def _condition_logger(condition: Condition) -> tuple[str, str] | None:
    """(logger class, where it was chosen) for one condition: its configs in order, then its overrides; None
    where none names one (the default TensorBoard logger). Unreadable configs are fit's to report."""
    found = None
    for config in condition.configs:
        try:
            data = yaml.safe_load(Path(config).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        trainer = data.get("trainer") if isinstance(data, dict) else None
        cls = _class_of(trainer.get("logger")) if isinstance(trainer, dict) else None
        if cls:
            found = (cls, f"{config}: trainer.logger")
    for key in ("trainer.logger", "trainer.logger.class_path"):
        cls = _class_of(condition.overrides.get(key))
        if cls:
            found = (cls, f"conditions.{condition.name}.overrides: {key}")
    return found


def check_loggers(conditions: tuple[Condition, ...], fit_args: tuple[str, ...]) -> None:
    """Refuse a condition whose logger is W&B's, MLflow's, Comet's or Neptune's (ConfigError naming file and field).

    A ``--trainer.logger`` among ``fit_args`` (appended to every run) outranks each condition's own choice.
    """
    flagged = _from_flags(fit_args)
    for condition in conditions:
        chosen = (flagged, "fit_args: --trainer.logger") if flagged else _condition_logger(condition)
        if chosen and chosen[0].rsplit(".", 1)[-1] in NO_FOLDER_LOGGERS:
            cls, where = chosen
            raise ConfigError(
                f"{where}: {cls} (condition {condition.name}): a sweep gives each run its folder "
                f"D/<condition>/seed-<s>/ through the logger's save_dir, name and version, which only "
                f"TensorBoardLogger and CSVLogger map to a folder of the run's own (W&B would put every "
                f"condition's seed-s run in one folder and one run id); sweep with one of those, or run "
                f"`hierlatent fit` per run with this logger")
