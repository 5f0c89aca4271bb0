"""The parts of ``hierlatent fit`` that talk to its user (wired in by ``hierlatent.cli``).

``fit_callbacks`` adds, unless the config already has its own: a one-line progress log when standard
output is not a terminal, a model summary without Lightning's meaningless "Total Flops: 0", and the
alignment of fractional validation with the checkpoint schedule. ``print_start`` / ``print_summary``
print where the run and the corpus are, and what the run left behind (rank 0 only).
"""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch.callbacks import ModelSummary, ProgressBar

from hierlatent.callbacks.report import (
    AlignValidation, FlopsFreeSummary, LogProgress, run_directory, start_lines, summary_lines,
)


def fit_callbacks(config: dict[str, Any]) -> list:
    """The callbacks ``fit`` adds to the trainer config's own (``config``: the trainer's init arguments)."""
    own = list(config.get("callbacks") or [])
    added: list = [AlignValidation()]
    if config.get("enable_progress_bar") is not False and not sys.stdout.isatty() and not any(isinstance(c, ProgressBar) for c in own):
        added.append(LogProgress())
    if config.get("enable_model_summary") is not False and not any(isinstance(c, ModelSummary) for c in own):
        added.append(FlopsFreeSummary())
    return added


def print_start(trainer: Any, datamodule: Any) -> None:
    """Print the run directory and the corpus path (found in the cache, or about to be generated)."""
    from hierlatent.corpora.store import META, corpus_dir

    log_dir = run_directory(trainer.logger, trainer.default_root_dir)
    generator = getattr(datamodule, "generator", None)
    if generator is None:
        return
    root = corpus_dir(generator)
    for line in start_lines(log_dir, root, (root / META).exists()):
        print(line, flush=True)


def print_summary(trainer: Any, module: Any, datamodule: Any) -> None:
    """Print the end-of-fit summary (steps, tokens, losses vs references, where the outputs are)."""
    try:
        references = dict(datamodule.reference_losses)
    except RuntimeError:  # the data module was never set up: no references to compare with
        references = {}
    print("\n".join(summary_lines(trainer, module, references)), flush=True)
