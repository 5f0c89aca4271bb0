"""SplitMix64's output function: the bit mixer of every generator's counter-based streams and of the data order.

One definition, two compilations: ``mix`` is plain numpy (uint64 scalars or arrays, wraparound arithmetic;
``hierlatent.data.permutation``'s Feistel rounds and keys), ``finalise`` is the same function compiled by numba
for the PCFG and n-gram kernels. Arithmetic stays in ``np.uint64``: numba turns mixed signed/unsigned 64-bit
arithmetic into float64.
"""

from __future__ import annotations

import numba
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's state increment (2^64 / golden ratio, odd)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix(z):
    """SplitMix64's finaliser: a bijection of 64-bit words with full avalanche (numpy uint64 scalar or array;
    callers outside numba wrap it in ``np.errstate(over="ignore")``, the multiplications wrap by design)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


#: ``mix`` compiled for the generators' numba kernels
finalise = numba.njit(cache=True, inline="always")(mix)
