"""The data pipeline: ``CorpusDataModule`` (``module``), its windows (``windows``), rank-invariant samplers
(``samplers``) and the ``DataLoader`` classes that turn windows into batches (``loaders``).

The keyed permutation the samplers (and the PCFG train order) use is the leaf ``hierlatent._splitmix``.
"""

from hierlatent.data.loaders import WindowLoader
from hierlatent.data.module import CorpusDataModule
from hierlatent.data.samplers import EvalWindowSampler, TrainWindowSampler
from hierlatent.data.windows import RawWindows, TokenWindows

__all__ = ["CorpusDataModule", "EvalWindowSampler", "RawWindows", "TokenWindows", "TrainWindowSampler",
           "WindowLoader"]
