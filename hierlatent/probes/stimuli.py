"""Random-token stimuli as the research code draws them, and the vocabulary bound they are drawn below.

Three input choices where the research code's evaluators are explicit (docs/research.md#stimuli):

- random-token ids: the research code draws Hydra's random sequences (and the induction stimulus) uniformly
  in ``[100, V − 100)``; ``ids="research"`` does the same, ``ids="full"`` draws in ``[0, V)``.
- the upper bound ``V``: the research code takes it from the tokenizer (``tokenizer.vocab_size``), not from
  the ``lm_head`` rows, which are more when an embedding is padded (OLMo-1B-hf: 50304 rows, 50280
  tokenizer ids). ``vocab="tokenizer"`` reads the tokenizer saved beside the checkpoint (the directory the
  model was loaded from); a model built in memory (``fit``) has no such directory and its rows *are* the
  corpus vocabulary, so the rows are used. ``vocab="model"`` always uses the rows.
- held-out windows (``hierlatent.data.windows.first_windows``): the first N consecutive context-length
  chunks of the test split, beside seeded random offsets.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError

RandomIds = Literal["full", "research"]
VocabSource = Literal["tokenizer", "model"]
#: ids the research code leaves out at each end of the vocabulary in its random-token stimuli
RESEARCH_MARGIN = 100


@functools.lru_cache(maxsize=8)
def _saved_tokenizer_size(directory: str) -> int | None:
    from transformers import AutoTokenizer

    path = Path(directory)
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    try:
        return int(AutoTokenizer.from_pretrained(directory).vocab_size)
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or unknown tokenizer: fall back to the rows
        return None


def tokenizer_vocab_size(model: nn.Module) -> int | None:
    """``tokenizer.vocab_size`` of the tokenizer saved in the directory ``model`` was loaded from, or None.

    Args:
        model: HF causal LM (``from_pretrained`` records its directory as ``name_or_path``).
    """
    where = str(getattr(model, "name_or_path", "") or "")
    return _saved_tokenizer_size(where) if where and Path(where).is_dir() else None


def vocab_bound(model: nn.Module, rows: int, source: VocabSource) -> int:
    """The upper id bound V of random stimuli: the tokenizer's vocabulary (capped by ``rows``) or ``rows``.

    Args:
        model: HF causal LM.
        rows: the unembedding's rows (``ModelAdapter.vocab_size``).
        source: "tokenizer" (the research code) or "model".
    """
    if source not in ("tokenizer", "model"):
        raise ProbeError(f"vocab: must be 'tokenizer' or 'model', got {source!r}")
    size = tokenizer_vocab_size(model) if source == "tokenizer" else None
    return rows if size is None else min(size, rows)


def random_id_range(vocab: int, ids: RandomIds, where: str) -> tuple[int, int]:
    """``[0, V)`` for "full", ``[100, V − 100)`` for "research" (ProbeError naming ``where`` if empty).

    Args:
        vocab: the upper bound V.
        ids: "full" or "research".
        where: the probe argument, for the error message.
    """
    if ids not in ("full", "research"):
        raise ProbeError(f"{where}: must be 'full' or 'research', got {ids!r}")
    low, high = (0, vocab) if ids == "full" else (RESEARCH_MARGIN, vocab - RESEARCH_MARGIN)
    if high <= low:
        raise ProbeError(f"{where}: {ids!r} leaves no ids in [{low}, {high}) for a vocabulary of {vocab}")
    return low, high


def random_tokens(shape: tuple[int, int], id_range: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Seeded uniform random ids in ``[low, high)``: LongTensor of ``shape``.

    Args:
        shape: ``(n, T)``.
        id_range: ``(low, high)``.
        generator: seeded source of randomness.
    """
    return torch.randint(id_range[0], id_range[1], shape, generator=generator)
