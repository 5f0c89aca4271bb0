"""numba kernels of the PCFG-documents generator (``hierlatent.corpora.pcfg``).

Randomness is counter-based splitmix64: a stream is a 64-bit state that advances by the golden-ratio
increment, each output is the splitmix64 finaliser of the state. Stream keys are hashes: a base
document's key is ``mix(split_key ^ base)``; role r's shuffle uses ``mix(doc_key ^ r)``; sentence slot j
of copy c uses ``mix(mix(doc_key ^ (3 + c)) ^ j)``. So a document's draws never depend on which shard or
process makes it, and ``reference/pcfg.py`` reproduces every draw with Python ints masked to 64 bits.

Draw conventions (the reference uses the same ones):

* a uniform float is ``(x >> 11) * 2**-53`` (exact, in [0, 1));
* a uniform integer in ``[0, n)`` is ``((x >> 32) * n) >> 32`` (32-bit multiply-high, exact in uint64;
  bias below n / 2**32, negligible for the sizes here);
* a categorical draw is the inverse CDF: the smallest k with ``u < cdf[k]`` (``bisect_right``). The fast
  path starts from a guide table (Chen & Asau) and then walks, which gives the same k as a binary search.
"""

from __future__ import annotations

import numba
import numpy as np

from hierlatent._splitmix import GOLDEN, finalise

_LOW32 = np.uint64(0xFFFFFFFF)
_TO_UNIT = 2.0 ** -53
N_ROLES = 3  # subjects, verbs, objects: rows of the permutation and Zipf tables
TAG_SENTENCES = 3  # stream tags 0..2 shuffle the three roles; 3 + copy drives a copy's sentences


@numba.njit(cache=True, inline="always")
def mix(x):
    """splitmix64 of one state: the keyed hash used to derive stream keys (``hierlatent._splitmix.splitmix64`` compiled)."""
    return finalise(x + GOLDEN)


@numba.njit(cache=True, inline="always")
def _uniform(x):
    return np.float64(x >> np.uint64(11)) * _TO_UNIT


@numba.njit(cache=True, inline="always")
def _below(x, n):
    return np.int64(((x >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@numba.njit(cache=True, inline="always")
def _categorical(u, cdf, guide, n_guide):
    """Smallest k with ``u < cdf[k]``: start at the guide entry, walk up; walk down guards float rounding."""
    k = guide[np.int64(u * n_guide)]
    while u >= cdf[k]:
        k += 1
    while k > 0 and u < cdf[k - 1]:
        k -= 1
    return k


@numba.njit(cache=True)
def shuffle_roles(perm, sizes, doc_key):
    """Forward Fisher-Yates of each role's row of ``perm`` (position i fixed at step i), one stream per role.

    Each 64-bit output serves two steps (high half for even i, low half for odd i): in the shuffled train
    split every document needs its own shuffle (about a quarter of the time), and this halves its draws.
    """
    for r in range(N_ROLES):
        n = sizes[r]
        state = mix(doc_key ^ np.uint64(r))
        for i in range(n):
            perm[r, i] = i
        x = np.uint64(0)
        for i in range(n - 1):
            if i % 2 == 0:
                state += GOLDEN
                x = finalise(state)
                j = i + _below(x, n - i)
            else:
                j = i + _below(x << np.uint64(32), n - i)
            perm[r, i], perm[r, j] = perm[r, j], perm[r, i]


@numba.njit(cache=True, inline="always")
def _slot(buf, n, state, role, perm, grammar, n_guide):
    sizes, offsets, cdf, guide, m_cdf, p_svo, n_conn = grammar
    state += GOLDEN
    k = _categorical(_uniform(finalise(state)), cdf[role], guide[role], n_guide)
    buf[n] = offsets[role] + perm[role, k]
    return state


@numba.njit(cache=True, inline="always")
def sample_sentence(buf, state, perm, grammar, n_guide):
    """One sentence (no EOS) into ``buf``; returns (length, state).

    ``grammar`` is (sizes, offsets, cdf, guide, m_cdf, p_svo, n_connectors). Draw order: the form, then
    (S V O only) the number of extra clauses m, then the tokens left to right.
    """
    sizes, offsets, cdf, guide, m_cdf, p_svo, n_conn = grammar
    state += GOLDEN
    if _uniform(finalise(state)) < p_svo:
        state += GOLDEN
        u = _uniform(finalise(state))
        m = 0
        while u >= m_cdf[m]:
            m += 1
        n = 0
        for c in range(m + 1):
            if c > 0:
                state += GOLDEN
                buf[n] = offsets[3] + _below(finalise(state), n_conn)
                n += 1
            for role in range(N_ROLES):  # S V O
                state = _slot(buf, n, state, role, perm, grammar, n_guide)
                n += 1
        return n, state
    state = _slot(buf, 0, state, 1, perm, grammar, n_guide)  # V S O
    state = _slot(buf, 1, state, 0, perm, grammar, n_guide)
    state = _slot(buf, 2, state, 2, perm, grammar, n_guide)
    return 3, state


# -- the test-sentence table --------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def hash_tokens(tokens, start, stop):
    """64-bit hash of the token tuple ``tokens[start:stop]`` (a chain of splitmix64 steps)."""
    h = np.uint64(0)
    for i in range(start, stop):
        h = mix(h ^ np.uint64(tokens[i]))
    return h


@numba.njit(cache=True, inline="always")
def _triple_bit(tokens, start, n, offsets, sizes):
    """Bit of a sentence's first three tokens: region 0 a 3-token S V O, 1 a V S O, 2 the S V O head of a longer one."""
    a, b, c = tokens[start], tokens[start + 1], tokens[start + 2]
    region = 2
    if n == 3:
        region = 0
        if a >= offsets[1]:  # V S O: index it by (S, V, O) like the others
            region, a, b = 1, b, a
    s, v, o = a - offsets[0], b - offsets[1], c - offsets[2]
    return ((region * sizes[0] + s) * sizes[1] + v) * sizes[2] + o


@numba.njit(cache=True)
def index_sentences(tokens, eos, offsets, sizes, bitmap, use_bitmap):
    """Set the bitmap bit of every EOS-terminated sentence; return the hashes the hash table must hold.

    With the bitmap, a 3-token sentence is stored exactly by its bit; a longer one sets its head's bit
    (a cheap pre-filter: most heads were never seen) and is hashed. Without it, every sentence is hashed.
    """
    n_sent = 0
    for t in tokens:
        n_sent += t == eos
    out = np.empty(n_sent, dtype=np.uint64)
    start, k = 0, 0
    for i in range(len(tokens)):
        if tokens[i] == eos:
            n = i - start
            if use_bitmap and n >= 3:
                bit = _triple_bit(tokens, start, n, offsets, sizes)
                bitmap[bit >> 3] |= np.uint8(1 << (bit & 7))
            if not use_bitmap or n != 3:
                out[k] = hash_tokens(tokens, start, i)
                k += 1
            start = i + 1
    return out[:k]


@numba.njit(cache=True, inline="always")
def _in_hashes(h, shift, starts, fingerprints):
    """Whether hash ``h`` is in the bucketed table: bucket = top bits, then a 32-bit fingerprint scan."""
    b = h >> np.uint64(shift)
    fp = np.uint32(h & _LOW32)
    for k in range(starts[b], starts[b + 1]):
        if fingerprints[k] == fp:
            return True
    return False


@numba.njit(cache=True, inline="always")
def reject_seen(pending, n_pending, rows, lengths, table, offsets, sizes, hits):
    """Keep in ``pending`` the slots whose sentence is in the test table; returns how many.

    Branch-free first pass: every bitmap load is issued before any result is used, so the cache misses
    of a document's sentences overlap (a branch per lookup serialised them: 2x slower).
    """
    use_bitmap, bitmap, shift, starts, fingerprints = table
    for k in range(n_pending):
        j = pending[k]
        if use_bitmap:
            bit = _triple_bit(rows[j], 0, lengths[j], offsets, sizes)
            hits[k] = (bitmap[bit >> 3] >> (bit & 7)) & 1
        else:
            hits[k] = 1
    for k in range(n_pending):  # a head seen in the test split, or no bitmap: ask the hash table
        j = pending[k]
        if hits[k] and (lengths[j] != 3 or not use_bitmap):
            hits[k] = _in_hashes(hash_tokens(rows[j], 0, lengths[j]), shift, starts, fingerprints)
    still = 0
    for k in range(n_pending):
        pending[still] = pending[k]
        still += hits[k]
    return still


# -- documents ----------------------------------------------------------------------------------------
@numba.njit(cache=True)
def generate_documents(bases, copies, split_key, grammar, n_sentences, eos, dedupe, table, max_tries, out):
    """Documents (bases[d], copies[d]) in order, into ``out`` (grown as needed); returns (tokens, ok).

    Every sentence slot of a copy has its own stream, so a document's sentences are drawn as a batch and
    their test-table lookups issued back to back: the memory accesses overlap instead of stalling one by
    one. A rejected slot redraws from its own stream. ``ok`` is False when some slot found no sentence
    outside the test table in ``max_tries`` draws. Permutations are drawn once per run of equal ``bases``.
    """
    sizes, offsets, cdf, guide, m_cdf, p_svo, n_conn = grammar
    perm = np.empty((N_ROLES, cdf.shape[1]), dtype=np.int64)
    rows = np.empty((n_sentences, 3 + 4 * len(m_cdf)), dtype=np.int64)
    lengths = np.empty(n_sentences, dtype=np.int64)
    states = np.empty(n_sentences, dtype=np.uint64)
    pending = np.empty(n_sentences, dtype=np.int64)
    hits = np.empty(n_sentences, dtype=np.int64)
    n_guide = guide.shape[1] - 1
    n_out = 0
    prev = -1
    for d in range(len(bases)):
        doc_key = mix(split_key ^ np.uint64(bases[d]))
        if bases[d] != prev:
            shuffle_roles(perm, sizes, doc_key)
            prev = bases[d]
        copy_key = mix(doc_key ^ np.uint64(TAG_SENTENCES + copies[d]))
        n_pending = n_sentences
        for j in range(n_sentences):
            pending[j] = j
            states[j] = mix(copy_key ^ np.uint64(j))
        for _ in range(max_tries):
            for k in range(n_pending):  # draw every pending slot
                j = pending[k]
                lengths[j], states[j] = sample_sentence(rows[j], states[j], perm, grammar, n_guide)
            if not dedupe:
                break
            n_pending = reject_seen(pending, n_pending, rows, lengths, table, offsets, sizes, hits)
            if n_pending == 0:
                break
        if dedupe and n_pending:
            return out[:n_out], False
        while n_out + lengths.sum() + n_sentences > len(out):
            out = np.concatenate((out, out))
        for j in range(n_sentences):
            for i in range(lengths[j]):
                out[n_out + i] = rows[j, i]
            out[n_out + lengths[j]] = eos
            n_out += lengths[j] + 1
    return out[:n_out], True
