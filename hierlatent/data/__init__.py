"""The data pipeline: ``CorpusDataModule`` and its windows and rank-invariant samplers.

The keyed permutation the samplers (and the PCFG train order) use is the leaf ``hierlatent._splitmix``.
"""

from hierlatent.data.module import CorpusDataModule, WindowLoader
from hierlatent.data.samplers import EvalWindowSampler, TrainWindowSampler
from hierlatent.data.windows import RawWindows, TokenWindows

__all__ = ["CorpusDataModule", "EvalWindowSampler", "RawWindows", "TokenWindows", "TrainWindowSampler",
           "WindowLoader"]
