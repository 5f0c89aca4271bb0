"""The data pipeline: ``CorpusDataModule`` and its windows, samplers and keyed permutation.

Names are loaded on first use (PEP 562), so importing a light submodule such as
``hierlatent.data.permutation`` (the corpus generators' train order, in spawned generation workers) does not
load Lightning through ``hierlatent.data.module``.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "CorpusDataModule": "module",
    "WindowLoader": "module",
    "epoch_key": "permutation",
    "feistel_permutation": "permutation",
    "random_offsets": "permutation",
    "EvalWindowSampler": "samplers",
    "TrainWindowSampler": "samplers",
    "RawWindows": "windows",
    "TokenWindows": "windows",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
