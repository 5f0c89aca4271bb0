"""The data pipeline: ``CorpusDataModule`` and its windows, samplers and keyed permutation."""

from hierlatent.data.module import CorpusDataModule
from hierlatent.data.permutation import epoch_key, feistel_permutation, random_offsets
from hierlatent.data.samplers import EvalWindowSampler, TrainWindowSampler
from hierlatent.data.windows import TokenWindows

__all__ = [
    "CorpusDataModule",
    "EvalWindowSampler",
    "TokenWindows",
    "TrainWindowSampler",
    "epoch_key",
    "feistel_permutation",
    "random_offsets",
]
