"""SplitMix64's output function as a numba kernel: the bit mixer of every generator's counter-based streams.

One definition for the PCFG and n-gram kernels (and the same constants as ``hierlatent.data.permutation``'s
vectorised numpy version). Arithmetic stays in ``np.uint64``: numba turns mixed signed/unsigned 64-bit
arithmetic into float64.
"""

from __future__ import annotations

import numba
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's state increment (2^64 / golden ratio, odd)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, inline="always")
def finalise(z):
    """SplitMix64's finaliser: a bijection of 64-bit words with full avalanche."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))
