"""Numba kernels of ``NGramCorpus``: the counter-based random stream, the context hash, sampling and the Bayes loss.

Everything here is the fast twin of a plain-Python definition in ``hierlatent/corpora/reference/ngram.py``;
the module docstring of ``hierlatent/corpora/ngram.py`` documents the stream and the hash. All 64-bit
arithmetic is on ``np.uint64`` (numba turns mixed signed/unsigned 64-bit arithmetic into float64), and
wraps modulo 2^64 exactly like the reference's ``& MASK``.
"""

from __future__ import annotations

import numba
import numpy as np

from hierlatent._splitmix import GOLDEN as _GAMMA
from hierlatent._splitmix import finalise as mix64

HASH_BASE = 0xD6E8FEB86659FD93  # odd multiplier of the polynomial prefix hash
LENGTH_SALT = 0x632BE59BD9B4E019  # the window length enters the hash, so windows of different lengths differ

_BASE, _SALT = np.uint64(HASH_BASE), np.uint64(LENGTH_SALT)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2^-53: 53 random bits -> a double in [0, 1), exactly


@numba.njit(cache=True)
def sentence_key(seed, split_id, sentence):
    """The SplitMix64 start state of one sentence: a hash chain of (seed, split, sentence index)."""
    k = mix64(np.uint64(seed))
    k = mix64(k + np.uint64(split_id))
    return mix64(k + np.uint64(sentence))


@numba.njit(cache=True, inline="always")
def uniform(key, j):
    """Draw ``j`` (0, 1, ...) of the stream ``key``: SplitMix64 output j+1, top 53 bits as a double in [0, 1)."""
    z = mix64(key + (np.uint64(j) + _ONE) * _GAMMA)
    return float(z >> _S11) * _TWO_M53


@numba.njit(cache=True, inline="always")
def context_of(window_hash, n, n_contexts):
    """Context id of a history window from its polynomial hash and length ``n``."""
    return mix64(window_hash + np.uint64(n) * _SALT) % np.uint64(n_contexts)


@numba.njit(cache=True)
def base_powers(n):
    """HASH_BASE^k mod 2^64 for k = 0..n (to cut a window out of the prefix hashes)."""
    pw = np.empty(n + 1, dtype=np.uint64)
    pw[0] = _ONE
    for k in range(1, n + 1):
        pw[k] = pw[k - 1] * _BASE
    return pw


@numba.njit(cache=True, inline="always")
def window_context(prefix, powers, p, n, n_contexts):
    """Context of the last ``n`` of the ``p`` tokens so far (``prefix[k]`` = hash of the first k tokens)."""
    h = prefix[p] - prefix[p - n] * powers[n]
    return context_of(h, n, n_contexts)


@numba.njit(cache=True, inline="always")
def pick(cdf, u):
    """Smallest i with cdf[i] > u (bisect_right), clipped to the last index; ``cdf`` is one 1-D row."""
    i = 0
    last = len(cdf) - 1
    while i < last and cdf[i] <= u:
        i += 1
    return i


@numba.njit(cache=True, inline="always")
def draw_word(row, guide_row, u):
    """bisect_right(row, u) clipped to the last word: start at the guide entry of u's bucket, then scan.

    ``guide_row[k]`` is the first index whose CDF exceeds k/M (M a power of two, so k/M <= u is exact and the
    start never overshoots). With M ~ the number of words the scan is ~1 step; measured faster than first
    testing the CDF's head line, whose 50/50 branch mispredicts.
    """
    last = len(row) - 1
    i = guide_row[int(u * len(guide_row))]
    while i < last and row[i] <= u:
        i += 1
    return i


@numba.njit(cache=True)
def generate(out, seed, split_id, first, n_sent, min_len, extra, orders, order_cdf, cdf, guide, eos):
    """Write sentences ``first .. first+n_sent-1`` of a split into ``out``; returns the number of tokens written.

    Per sentence: draw 0 gives the length; position p uses draw 1+2p for the order and 2+2p for the token,
    the inverse CDF of its context's row (``draw_word``).
    """
    n_contexts = guide.shape[0]
    max_len = min_len + extra - 1
    powers = base_powers(max_len)
    prefix = np.zeros(max_len + 1, dtype=np.uint64)
    n_out = 0
    for s in range(first, first + n_sent):
        key = sentence_key(seed, split_id, s)
        length = min_len + int(uniform(key, 0) * extra)
        for p in range(length):
            n = min(orders[pick(order_cdf, uniform(key, 1 + 2 * p))], p)
            c = window_context(prefix, powers, p, n, n_contexts)
            i = draw_word(cdf[c], guide[c], uniform(key, 2 + 2 * p))
            out[n_out] = i
            n_out += 1
            prefix[p + 1] = prefix[p] * _BASE + np.uint64(i) + _ONE
        out[n_out] = eos
        n_out += 1
    return n_out


@numba.njit(cache=True)
def build_guide(cdf, m):
    """``guide[c, k]`` = bisect_right(cdf[c], k/m) clipped to the last index (k = 0..m-1)."""
    n_contexts, n = cdf.shape
    guide = np.empty((n_contexts, m), dtype=np.int32)
    for c in range(n_contexts):
        i = 0
        for k in range(m):
            t = k / m
            while i < n - 1 and cdf[c, i] <= t:
                i += 1
            guide[c, k] = i
    return guide


@numba.njit(cache=True)
def token_nll(tokens, min_len, extra, orders, order_probs, pmf, eos):
    """Bayes-optimal -log p of every token of a stream of whole sentences (each ending in ``eos``).

    Next-token law given p tokens of the current sentence: EOS with the length hazard
    h_p = P(L = p | L >= p), otherwise word w with (1 - h_p) * sum_o P(o) * pmf[context(o, p), w].
    """
    n_contexts = pmf.shape[0]
    max_len = min_len + extra - 1
    powers = base_powers(max_len)
    prefix = np.zeros(max_len + 1, dtype=np.uint64)
    nll = np.empty(len(tokens))
    ctx = np.empty(len(orders), dtype=np.int64)
    p = 0
    for t in range(len(tokens)):
        hazard = 0.0 if p < min_len else 1.0 / (min_len + extra - p)
        w = tokens[t]
        if w == eos:
            nll[t] = -np.log(hazard)
            p = 0
            continue
        for o in range(len(orders)):
            ctx[o] = window_context(prefix, powers, p, min(orders[o], p), n_contexts)
        q = 0.0
        for o in range(len(orders)):
            q += order_probs[o] * pmf[ctx[o], w]
        nll[t] = -np.log((1.0 - hazard) * q)
        prefix[p + 1] = prefix[p] * _BASE + np.uint64(w) + _ONE
        p += 1
    return nll


@numba.njit(cache=True, fastmath=True)
def predictive_entropy(tokens, min_len, extra, orders, order_probs, pmf, eos):
    """Entropy (nats) of the Bayes predictive at every token position of a stream of whole sentences.

    Its mean is the expected Bayes loss at those positions with the sampling noise of the drawn tokens
    averaged out (the positions' histories are still the sampled ones). fastmath only lets the word loop
    vectorise; it is a float sum of ~1000 terms, not a bit-exact quantity.
    """
    n_contexts, n_words = pmf.shape
    max_len = min_len + extra - 1
    powers = base_powers(max_len)
    prefix = np.zeros(max_len + 1, dtype=np.uint64)
    ent = np.empty(len(tokens))
    mixture = np.empty(n_words)
    ctx = np.empty(len(orders), dtype=np.int64)
    weight = np.empty(len(orders))
    p = 0
    for t in range(len(tokens)):
        hazard = 0.0 if p < min_len else 1.0 / (min_len + extra - p)
        k = 0  # distinct contexts and their summed order probabilities (short prefixes collapse orders)
        for o in range(len(orders)):
            c = window_context(prefix, powers, p, min(orders[o], p), n_contexts)
            j = 0
            while j < k and ctx[j] != c:
                j += 1
            if j == k:
                ctx[k], weight[k] = c, 0.0
                k += 1
            weight[j] += order_probs[o]
        mixture[:] = weight[0] * pmf[ctx[0]]
        for j in range(1, k):
            mixture += weight[j] * pmf[ctx[j]]
        ent[t] = _hazard_entropy(hazard, mixture)
        if tokens[t] == eos:
            p = 0
        else:
            prefix[p + 1] = prefix[p] * _BASE + np.uint64(tokens[t]) + _ONE
            p += 1
    return ent


@numba.njit(cache=True, fastmath=True)
def _hazard_entropy(hazard, mixture):
    """Entropy of (EOS with prob hazard, word w with prob (1 - hazard) * mixture[w])."""
    h = 0.0 if hazard == 0.0 else -hazard * np.log(hazard)
    if hazard < 1.0:
        s = 0.0
        for w in range(len(mixture)):
            s += mixture[w] * np.log(mixture[w])  # every Zipf weight is > 0
        h -= (1.0 - hazard) * (np.log(1.0 - hazard) + s)
    return h
