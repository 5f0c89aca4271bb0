"""The data pipeline: ``CorpusDataModule`` and its windows, samplers and keyed permutation."""

from hierlatent.data.module import CorpusDataModule, WindowLoader
from hierlatent.data.permutation import epoch_key, feistel_permutation, random_offsets
from hierlatent.data.samplers import EvalWindowSampler, TrainWindowSampler
from hierlatent.data.windows import RawWindows, TokenWindows

__all__ = [
    "CorpusDataModule",
    "EvalWindowSampler",
    "RawWindows",
    "TokenWindows",
    "TrainWindowSampler",
    "WindowLoader",
    "epoch_key",
    "feistel_permutation",
    "random_offsets",
]
