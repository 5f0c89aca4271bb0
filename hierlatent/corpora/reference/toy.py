"""Per-sequence reference generator and brute-force Bayes loss for ``ToyHierarchy`` (test oracle, benchmark baseline)."""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np

from hierlatent.corpora.toy import ToyHierarchy


def _draw(probs, u: float) -> int:
    """Inverse CDF of one categorical draw, one element at a time."""
    cdf = list(itertools.accumulate(float(p) for p in probs))
    cdf[-1] = 1.0
    return min(bisect.bisect_right(cdf, u), len(cdf) - 1)


def reference_shard(gen: ToyHierarchy, split: str, index: int, context=None) -> np.ndarray:
    """The same shard as ``gen.generate_shard``, built one sequence and one token at a time."""
    t, u = gen.tables(), gen.draws(split, index)
    out: list[int] = []
    for s in range(len(u["z0"])):
        z0 = _draw(t["pi0"], u["z0"][s])
        for g in range(gen.segments):
            z1 = _draw(t["pi1"][z0], u["z1"][s, g])
            out += [_draw(t["emit"][z1], u["ev"][s, g, j]) for j in range(gen.evidence_per_segment)]
            out += [gen.cue_id, gen.query_offset + _draw(t["query"][z0, z1], u["q"][s, g])]
        out.append(gen.cue_id + 1)
    return np.array(out, dtype=np.int64)


def brute_force_nll(gen: ToyHierarchy, seq: np.ndarray) -> np.ndarray:
    """Posterior-predictive log-loss of one sequence by enumerating every latent assignment (tiny configs only)."""
    t = gen.tables()
    e = gen.evidence_per_segment

    def joint(prefix_len: int, z0: int, z1s: tuple[int, ...]) -> float:
        p = t["pi0"][z0] * math.prod(t["pi1"][z0, z1] for z1 in z1s)  # prior of the whole latent assignment
        for i in range(prefix_len):
            seg, pos = divmod(i, e + 2)
            if seg >= gen.segments:
                continue
            z1 = z1s[seg]
            if pos < e:
                p *= t["emit"][z1, seq[i]]
            elif pos == e + 1:
                p *= t["query"][z0, z1, seq[i] - gen.query_offset]
        return p

    latents = [(z0, z1s) for z0 in range(gen.n_top) for z1s in itertools.product(range(gen.n_sub), repeat=gen.segments)]
    nll = np.zeros(len(seq))
    for i in range(len(seq)):
        pos = i % (e + 2)
        if i == len(seq) - 1 or pos == e:  # [EOS] and [QUERY] are deterministic
            continue
        num = sum(joint(i + 1, z0, z1s) for z0, z1s in latents)
        den = sum(joint(i, z0, z1s) for z0, z1s in latents)
        nll[i] = -math.log(num / den)
    return nll
