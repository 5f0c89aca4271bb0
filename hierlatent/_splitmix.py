"""SplitMix64 and the keyed pseudo-random functions built on it: one definition for the corpora and the data.

A leaf module (imports nothing of hierlatent). ``mix`` is SplitMix64's output function in plain numpy (uint64
scalars or arrays, wraparound arithmetic); ``finalise`` is the same function compiled by numba for the PCFG
and n-gram kernels. Arithmetic stays in ``np.uint64``: numba turns mixed signed/unsigned 64-bit arithmetic
into float64. On top of it: stream keys (``epoch_key``), a keyed Feistel permutation (the PCFG train order and
the data sampler's window order) and keyed offsets (the sampler's window starts).

Why a Feistel network and not ``torch.randperm``: the paper-scale PCFG corpus has ~110M windows of 512
tokens; a materialised permutation is 0.9 GB of int64 per rank per epoch and takes seconds to build.
A keyed Feistel network (Luby-Rackoff: >= 4 rounds with a pseudo-random round function give a
pseudo-random permutation) evaluates the permutation at any index in O(1), vectorised over numpy uint64
arrays, so a sampler computes just the indices it needs. The round function is the SplitMix64 finaliser.
"""

from __future__ import annotations

import numba
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's state increment (2^64 / golden ratio, odd)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_M64 = (1 << 64) - 1
_FEISTEL_ROUNDS = 6


def mix(z):
    """SplitMix64's finaliser: a bijection of 64-bit words with full avalanche (numpy uint64 scalar or array;
    callers outside numba wrap it in ``np.errstate(over="ignore")``, the multiplications wrap by design)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


#: ``mix`` compiled for the generators' numba kernels
finalise = numba.njit(cache=True, inline="always")(mix)


# -- keyed pseudo-random functions (vectorised numpy; wraparound uint64 arithmetic) -------------------
def splitmix64(x: int) -> int:
    """One SplitMix64 output (state + increment, then the finaliser) for a Python int state taken mod 2**64."""
    with np.errstate(over="ignore"):
        return int(mix(np.uint64((x + int(GOLDEN)) & _M64)))


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 output (state + increment, then the finaliser) on a uint64 array."""
    with np.errstate(over="ignore"):
        return mix(x + GOLDEN)


def epoch_key(seed: int, epoch: int, stream: int) -> int:
    """64-bit key for (seed, epoch, stream); streams separate the permutation from the random offsets.

    Args:
        seed: the master seed.
        epoch: the epoch (the corpora use the split's ``SPLIT_IDS`` number here).
        stream: which stream of that epoch.
    """
    return splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ stream)


def feistel_permutation(positions: np.ndarray, n: int, key: int) -> np.ndarray:
    """Keyed pseudo-random permutation of ``[0, n)`` evaluated at ``positions`` (any shape, values < n).

    A balanced Feistel network on the smallest even number of bits covering ``n`` is a bijection on
    ``[0, 2^bits)``; cycle-walking (re-applying it while the value is >= n) restricts it to a bijection on
    ``[0, n)``, with fewer than 4 applications on average since ``2^bits < 4n``.

    Args:
        positions: indices to permute, integers in ``[0, n)``.
        n: size of the permuted range.
        key: 64-bit key (see ``epoch_key``).
    """
    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = [np.uint64(splitmix64(key + i)) for i in range(_FEISTEL_ROUNDS)]

    def once(x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(half), x & mask
        for k in keys:
            left, right = right, left ^ (_mix64(right ^ k) & mask)
        return (left << np.uint64(half)) | right

    out = once(np.asarray(positions, dtype=np.uint64))
    todo = out >= np.uint64(n)
    while todo.any():
        out[todo] = once(out[todo])
        todo = out >= np.uint64(n)
    return out.astype(np.int64)


def random_offsets(positions: np.ndarray, n_offsets: int, key: int) -> np.ndarray:
    """Seeded pseudo-random token offsets in ``[0, n_offsets)`` for window ``positions`` (keyed hash).

    Args:
        positions: window positions within the epoch.
        n_offsets: number of valid start offsets (``n_tokens - context_window + 1``).
        key: 64-bit key (see ``epoch_key``).
    """
    h = _mix64(np.asarray(positions, dtype=np.uint64) ^ np.uint64(key))
    return (h % np.uint64(n_offsets)).astype(np.int64)  # modulo bias < n_offsets / 2^64
