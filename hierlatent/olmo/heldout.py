"""Held-out corpus windows for ``probe-olmo``, so probes that need natural text (ICL, Hydra on held-out
windows) run post hoc as they do during ``fit``.

Source, in order: ``--heldout`` (a hierlatent corpus directory, its test split), else the corpus a ``fit``
run's HF export records in its ``hierlatent.json``. Windows are drawn at the runner's seeded offsets
(``ProbeRunner.n_heldout``, ``heldout_seed``) by the same function the data module uses, so a post-hoc
probe of a training checkpoint sees the same windows as the probe during training.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Literal

import torch

from hierlatent.corpora.store import open_corpus
from hierlatent.data.windows import TokenWindows, first_windows, sample_windows
from hierlatent.errors import ConfigError, CorpusError


def heldout_source(checkpoint: Path | None, explicit: Path | None) -> Path | None:
    """The corpus directory whose test split serves as held-out text for one checkpoint, or None.

    Args:
        checkpoint: the checkpoint's local directory (None for a hub revision not yet downloaded).
        explicit: the ``--heldout`` corpus directory, if given.
    """
    if explicit is not None:
        return Path(explicit)
    if checkpoint is None:
        return None
    try:
        corpus = json.loads((Path(checkpoint) / "hierlatent.json").read_text()).get("corpus")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return Path(corpus) if corpus and (Path(corpus) / "meta.json").is_file() else None


def check_heldout(probes: list, checkpoints: list[Path | None], explicit: Path | None) -> None:
    """At start-up: every checkpoint has held-out text when a configured probe needs it (ConfigError otherwise).

    Args:
        probes: all configured probes.
        checkpoints: local directories of the revisions (None where not downloaded yet).
        explicit: the ``--heldout`` corpus directory, if given.
    """
    if explicit is not None:
        try:
            open_corpus(explicit)
        except CorpusError as exc:  # names the directory; the flag is named here
            raise CorpusError(f"--heldout: {exc}") from None
    needs = [p for p in probes if getattr(p, "needs_heldout", False)]
    if not needs:
        return
    missing = [c for c in checkpoints if heldout_source(c, explicit) is None]
    if missing:
        name = "a hub revision" if missing[0] is None else str(missing[0])
        raise ConfigError(
            f"--heldout: {type(needs[0]).__name__} needs held-out corpus windows, and {name} (with {len(missing) - 1}"
            " more) records no corpus: pass --heldout <hierlatent corpus directory> or leave that probe out"
        )


@functools.lru_cache(maxsize=4)
def _test_windows(corpus: str, length: int) -> TokenWindows:
    opened = open_corpus(corpus)
    return TokenWindows.from_corpus(opened, "test", min(length, opened.n_tokens("test")))


def heldout_windows(source: Path, n: int, seed: int, max_positions: int | None,
                    offsets: Literal["random", "first"] = "random") -> torch.Tensor:
    """``n`` test-split windows of the model's context length (capped by the split): LongTensor[n, T].

    Args:
        source: corpus directory.
        n: number of windows.
        seed: seed of the offsets ("random" only).
        max_positions: the model's context length (None: 512).
        offsets: "random" = seeded random offsets; "first" = the first n consecutive windows (research code).
    """
    windows = _test_windows(str(source), int(max_positions or 512))
    return first_windows(windows, n) if offsets == "first" else sample_windows(windows, n, seed)
