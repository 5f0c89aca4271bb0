"""User-mistake checks and messages of the ``hierlatent`` Lightning subcommands (used by ``hierlatent.cli``).

- ``check_config_files``: every ``--config`` file exists, is a file, is UTF-8 text and parses as YAML
  (a malformed one is reported as ``file:line:column``), before jsonargparse reads it.
- ``parser_error_line``: a jsonargparse error (many lines, type reprs) as one line naming the flag, with
  a close-match suggestion for an unknown flag and the hint "see hierlatent <sub> --help";
  ``parse_or_error`` parses a light subcommand's arguments with it (plot, sweep, compare).
- ``check_trainer_args``: trainer flags that Lightning accepts silently or rejects only after the corpus
  is generated (a traceback then), checked on the parsed config.
- ``user_error_in``: the hierlatent error behind a wrapped exception (a callback's or probe's constructor
  raising inside jsonargparse's instantiation).
"""

from __future__ import annotations

import difflib
import json
import re
from argparse import ArgumentError
from pathlib import Path
from typing import Any

from hierlatent.checks import check_fraction_or_count, check_int
from hierlatent.commands import SUBCOMMAND_HELP
from hierlatent.errors import CheckpointError, ConfigError, HierlatentError

_CKPT_ALIASES = ("last", "best", "hpc", "registry")


def subcommand_of(args: list[str]) -> str | None:
    """The subcommand named in ``args`` (the first argument that is one), or None."""
    return next((a for a in args if a in SUBCOMMAND_HELP), None)


def _help_hint(args: list[str]) -> str:
    sub = subcommand_of(args)
    return f"see hierlatent {sub} --help" if sub else "see hierlatent --help"


# -- config files ----------------------------------------------------------------------------------
def _config_values(args: list[str]) -> list[str]:
    """The values given to ``-c``/``--config`` (``--config X`` and ``--config=X``)."""
    values = []
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith("--config="):
            values.append(arg.split("=", 1)[1])
    return values


def check_config_files(args: list[str]) -> None:
    """Refuse a ``--config`` that is missing, a directory, binary, or malformed YAML (ConfigError naming it).

    A value that is not an existing path and does not look like one (``--config '{model: {...}}'``) is
    left to jsonargparse, which accepts inline YAML there.

    Args:
        args: the command line after the program name.
    """
    import yaml

    for value in _config_values(args):
        path = Path(value).expanduser()
        if not path.exists():
            if re.search(r"[{}\[\]:\n]", value):
                continue  # inline YAML
            raise ConfigError(f"--config: file {value} does not exist")
        if path.is_dir():
            raise ConfigError(f"--config: {value} is a directory, not a YAML file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--config: {value} is not a text file (byte {exc.start} is not UTF-8)") from None
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {value}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{value}:{mark.line + 1}:{mark.column + 1}" if mark is not None else value
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            context = getattr(exc, "context", None)
            raise ConfigError(f"--config: {where}: malformed YAML: {problem}" + (f" ({context})" if context else "")) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"--config: {value} holds a {type(loaded).__name__}, not a mapping of config keys")


# -- parser errors ---------------------------------------------------------------------------------
def _simplify(text: str) -> str:
    """Type reprs as a user writes them: ``<class 'int'>`` -> int, ``typing.Literal[a, b]`` -> one of a, b."""
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    text = re.sub(r"typing\.Literal\[(.*?)\]", r"one of \1", text)
    text = re.sub(r"^Expected a ", "expected ", text).replace(". Got value: ", ", got ")
    return text.replace("NoneType", "null")


def _condense(detail: list[str]) -> str:
    """The indented detail lines of a jsonargparse message as one clause."""
    given = next((ln.split(":", 1)[1].strip() for ln in detail if ln.strip().startswith("Given value:")), None)
    if detail and detail[0].strip().startswith("Does not validate against any of the Union subtypes"):
        level = min((len(ln) - len(ln.lstrip()) for ln in detail if ln.lstrip().startswith("- ")), default=0)
        options = [_simplify(ln.strip()[2:]) for ln in detail if ln.lstrip().startswith("- ") and len(ln) - len(ln.lstrip()) == level]
        return f"invalid value {given}: " + "; or ".join(dict.fromkeys(options))
    parts = [_simplify(ln.strip()) for ln in detail if ln.strip() and not ln.strip().startswith("Given value type:")]
    return " ".join(parts)


def _unknown_flag(message: str, options: list[str]) -> str:
    """``unrecognized arguments: --x 1`` plus the closest known flag, if any."""
    flags = [tok.split("=", 1)[0] for tok in message.split(":", 1)[1].split() if tok.startswith("--")]
    close = difflib.get_close_matches(flags[0], options, n=1, cutoff=0.6) if flags and options else []
    prefixed = [o for o in options if flags and o.startswith(flags[0]) and o != flags[0]][:1]
    guess = (prefixed or close)[:1]
    return message.strip() + (f" (did you mean {guess[0]}? flags cannot be abbreviated)" if guess else "")


def parser_options(exc: BaseException) -> list[str]:
    """Every ``--flag`` of the parser that raised ``exc`` (jsonargparse marks a subcommand's parser on it)."""
    parser = None
    seen = exc
    while seen is not None and parser is None:
        parser = getattr(seen, "subcommand_parser", None) or getattr(seen, "parser", None)
        seen = seen.__cause__ or seen.__context__
    actions = getattr(parser, "_actions", []) if parser is not None else []
    return [s for a in actions for s in a.option_strings if s.startswith("--")]


def parser_error_line(exc: ArgumentError, args: list[str], options: list[str] | None = None) -> str:
    """One line for a jsonargparse error: ``--key: what is wrong (see hierlatent <sub> --help)``.

    Args:
        exc: the error raised by the parser (``exit_on_error=False``).
        args: the command line after the program name (for the subcommand in the hint).
        options: the parser's flags, for suggestions on an unknown flag.
    """
    message = str(exc).strip()
    lines = message.splitlines() or [""]
    match = re.match(r'Parser key "([^"]+)":\s*(.*)$', lines[0])
    if match:
        key, same_line = match.groups()
        text = f"--{key}: {_condense(([same_line] if same_line else []) + lines[1:])}"
    elif lines[0].startswith("unrecognized arguments:"):
        text = _unknown_flag(lines[0], options if options is not None else parser_options(exc))
    else:
        text = " ".join(ln.strip() for ln in lines)
    return f"{text} ({_help_hint(args)})"


def parse_or_error(parser: Any, args: list[str], subcommand: str) -> Any:
    """``parser.parse_args(args)`` of a light subcommand (``exit_on_error=False``); a parser error becomes
    one `ConfigError` line naming the flag (`parser_error_line`, with the parser's flags for suggestions).

    Args:
        parser: the subcommand's jsonargparse parser.
        args: the arguments after the subcommand.
        subcommand: its name, for the help hint.
    """
    try:
        return parser.parse_args(args)
    except ArgumentError as exc:
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        raise ConfigError(parser_error_line(exc, [subcommand, *args], options)) from None


def user_error_in(exc: BaseException) -> HierlatentError | None:
    """The first ``HierlatentError`` in ``exc``'s chain of causes, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, HierlatentError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


# -- trainer flags and checkpoint path -------------------------------------------------------------
#: (flag, smallest value, what it means) of the integer trainer flags
_TRAINER_INTS = (
    ("max_steps", -1, "-1 = no step limit"),
    ("max_epochs", -1, "-1 = no epoch limit"),
    ("min_steps", 0, "a lower bound on optimizer steps"),
    ("accumulate_grad_batches", 1, "batches per optimizer step"),
    ("log_every_n_steps", 0, "0 = never log"),
    ("num_sanity_val_steps", -1, "-1 = the whole validation set"),
    ("check_val_every_n_epoch", 1, "epochs between validations"),
)
#: trainer flags where a float is a fraction of the epoch and an integer a count of batches
_TRAINER_FRACTIONS = ("val_check_interval", "limit_train_batches", "limit_val_batches", "limit_test_batches")


def check_trainer_args(trainer: Any) -> None:
    """Check the parsed ``trainer`` section before anything is instantiated (ConfigError naming the flag).

    Args:
        trainer: the ``trainer`` namespace of the parsed config.
    """
    from lightning.pytorch.strategies import StrategyRegistry

    strategy = trainer.get("strategy")
    if isinstance(strategy, str) and strategy != "auto" and strategy not in StrategyRegistry.available_strategies():
        known = ", ".join(["auto", *StrategyRegistry.available_strategies()[:6], "..."])
        raise ConfigError(f"--trainer.strategy: unknown strategy {strategy!r}; choose from {known} or give a class_path")
    for key, low, meaning in _TRAINER_INTS:
        if trainer.get(key) is not None:
            check_int(f"--trainer.{key}", trainer.get(key), low, meaning)
    for key in _TRAINER_FRACTIONS:
        if trainer.get(key) is not None:
            check_fraction_or_count(f"--trainer.{key}", trainer.get(key))
    if trainer.get("val_check_interval") == 0:
        raise ConfigError("--trainer.val_check_interval: 0 would validate never; disable validation with --trainer.limit_val_batches 0")


def check_ckpt_path(ckpt: str | None) -> None:
    """``--ckpt_path`` is an alias (last, best, ...) or an existing checkpoint file (CheckpointError otherwise)."""
    if not ckpt or ckpt in _CKPT_ALIASES:
        return
    path = Path(ckpt)
    if path.is_dir():
        raise CheckpointError(f"--ckpt_path: {ckpt} is a directory; give a checkpoint file (e.g. {path / 'last.ckpt'}) or last")
    if not path.is_file():
        raise CheckpointError(f"--ckpt_path: checkpoint file {ckpt} does not exist")


# -- noise that is not ours to fix -----------------------------------------------------------------
class _DropTips(__import__("logging").Filter):
    """Drops Lightning's litlogger advertisement and its note that hierlatent's model summary replaced its own."""

    def filter(self, record: Any) -> bool:
        message = str(record.getMessage())
        return "litlogger" not in message and "Skipping setting a default `ModelSummary`" not in message


def silence_noise() -> None:
    """Hide third-party messages a hierlatent user did not ask for and cannot act on.

    Lightning's "Tip: ... litlogger" line and the ``LeafSpec`` deprecation warning Lightning's own
    ``_pytree`` helper triggers under torch >= 2.9 (Lightning's code, not the user's).
    """
    import logging
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")


def expand_list_flags(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """``--runs a b --runs c`` -> ``--runs '["a", "b", "c"]'`` for each list flag in ``flags`` (jsonargparse wants one
    list value; ``--flag=x`` and a JSON list as given pass through)."""
    out, values = [], {}
    i = 0
    while i < len(argv):
        flag, _, inline = argv[i].partition("=")
        if flag not in flags or (inline or (argv[i + 1] if i + 1 < len(argv) else "")).startswith("["):
            out.append(argv[i])
            i += 1
            continue
        items = [inline] if inline else []
        i += 1
        while not inline and i < len(argv) and not argv[i].startswith("--"):
            items.append(argv[i])
            i += 1
        if flag not in values:
            values[flag] = []
            out += [flag, ""]  # placeholder filled below, at the first occurrence
        values[flag] += items
    for flag, items in values.items():
        out[out.index(flag) + 1] = json.dumps(items)
    return out
