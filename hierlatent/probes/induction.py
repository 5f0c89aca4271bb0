"""Induction-family attention scores on repeated random tokens (docs/research.md#induction): paper k-order, Olsson, duplicate, previous.

Stimulus: n random tokens r repeated once, x = r‖r (length 2n). Every score is the mean of one attention
diagonal of the pattern ``A[l, h, query, key]`` (sample-mean pattern unless stated):

- paper k-order (the research code): score_k = mean_{i=0}^{n-k-1} A[n+k+i, k+i]. Query and key hold the
  *same token* (offset n: a duplicate-token pattern, not induction proper); k only trims the first k
  queries of the second copy. Reported as the max over (layer, head), or — the research code's OLMo mode —
  the max over (layer, head) per sample, then mean and std over samples.
- standard induction (Olsson et al. 2022): query n+i attends to i+1 (the token after the earlier copy),
  i = 0…n−1 (offset n−1).
- duplicate token: query n+i attends to i, i = 0…n−1 (offset n).
- previous token: query t attends to t−1, t = 1…2n−1 (offset 1).

Batched forwards of ``batch_size`` samples (``attention_patterns``; ``None`` = ``DEFAULT_BATCH``); scores are
diagonal gathers, no loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter, attention_patterns
from hierlatent.corpora.base import Vocabulary
from hierlatent.probes.base import Probe, check_in_role, role_range
from hierlatent.probes.stimuli import VocabSource, vocab_bound

# Samples per eager forward when ``batch_size`` is None. Eager attention materialises every layer's
# [B, H, 2n, 2n] scores and weights; one forward of all samples gets slower per sample as they grow (one CPU
# thread, 4x128 Llama, n = 32, 128 samples: 3.09 ms per sample in one forward, 2.63 in forwards of 16).
DEFAULT_BATCH = 16


def repeated_random_tokens(n: int = 64, n_samples: int = 20, low: int = 100, high: int = 900,
                           generator: torch.Generator | None = None) -> Tensor:
    """Random tokens repeated once.

    Args:
        n: length of the random half.
        n_samples: number of sequences.
        low: smallest token id (inclusive).
        high: largest token id (exclusive).
        generator: source of randomness (seeded: same stimuli at every checkpoint).

    Returns:
        ``[n_samples, 2n]`` long tensor, each row r‖r.
    """
    half = torch.randint(low, high, (n_samples, n), generator=generator)
    return torch.cat([half, half], dim=1)


def diagonal_mean(patterns: Tensor, offset: int, start: int = 0) -> Tensor:
    """Mean of ``A[offset + j, j]`` over j ≥ ``start`` (queries ``offset + start`` … T−1).

    Args:
        patterns: attention ``[..., T, T]`` (query, key).
        offset: query minus key.
        start: first diagonal entry included.
    """
    return torch.diagonal(patterns, offset=-offset, dim1=-2, dim2=-1)[..., start:].mean(-1)


def k_order_scores(patterns: Tensor, n: int, ks: Sequence[int] = tuple(range(1, 11))) -> Tensor:
    """Paper k-order scores of every head: score_k = mean_{i=0}^{n-k-1} A[n+k+i, k+i].

    Args:
        patterns: attention ``[..., T, T]`` with T = 2n (e.g. ``[L, H, T, T]`` or ``[L, B, H, T, T]``).
        n: length of the random half.
        ks: orders, each in 1…n−1.

    Returns:
        ``[K, ...]`` scores (the leading dims of ``patterns`` after K).
    """
    diag = torch.diagonal(patterns, offset=-n, dim1=-2, dim2=-1)  # [..., n]: A[n + j, j]
    suffix = diag.flip(-1).cumsum(-1).flip(-1)  # [..., n]: sum_{j' >= j} A[n + j', j']
    k = torch.as_tensor(list(ks), device=patterns.device)
    sums = suffix.index_select(-1, k)  # [..., K]
    scores = sums / (n - k).to(patterns.dtype)
    return scores.movedim(-1, 0)  # [K, ...]


def induction_scores(patterns: Tensor, n: int, ks: Sequence[int] = tuple(range(1, 11)),
                     aggregate: Literal["mean_pattern", "per_sample_max"] = "mean_pattern") -> dict[str, Any]:
    """All induction-family scores from the patterns of one batch of repeated sequences.

    Args:
        patterns: attention ``[L, B, H, 2n, 2n]``.
        n: length of the random half.
        ks: paper k-orders.
        aggregate: k-order reduction: max over heads of the sample-mean pattern, or per-sample max then
            mean and (population) std over samples.

    Returns:
        The ``induction`` JSON fragment with tensors (``per_head`` lists are ``[K, L, H]`` / ``[L, H]``).
    """
    mean = patterns.mean(1)  # [L, B, H, T, T] -> [L, H, T, T]
    per_head = {"k_order": k_order_scores(mean, n, ks),  # [K, L, H]
                "standard": diagonal_mean(mean, n - 1, start=1),  # [L, H]
                "duplicate": diagonal_mean(mean, n),
                "previous": diagonal_mean(mean, 1)}
    out: dict[str, Any] = {}
    if aggregate == "mean_pattern":
        out["k_order"] = per_head["k_order"].flatten(1).amax(1)  # [K, L*H] -> [K]
    else:
        per_sample = k_order_scores(patterns, n, ks).transpose(1, 2).flatten(2).amax(2)  # [K, L, B, H] -> [K, B]
        out["k_order"] = per_sample.mean(1)
        out["k_order_std"] = per_sample.std(1, correction=0)
    for key in ("standard", "duplicate", "previous"):
        out[key] = per_head[key].max()
    out["per_head"] = per_head
    return out


class InductionProbe(Probe):
    """Induction-family attention scores on repeated random tokens (paper k-order, Olsson, duplicate, previous).

    Args:
        n: length of the random half (stimulus length 2n must fit the context).
        n_samples: number of repeated sequences.
        ks: paper k-orders, each in 1…n−1.
        aggregate: "mean_pattern" (paper: max over heads of the sample-mean pattern) or "per_sample_max"
            (research OLMo scripts: max per sample, then mean and std).
        token_low: smallest stimulus token id.
        token_high: stimulus ids are < token_high; None = vocabulary size − 100.
        batch_size: sequences per forward, the memory knob (each forward holds its [B, H, 2n, 2n] eager
            attention weights per layer); None = ``DEFAULT_BATCH`` (16). The scores do not depend on it.
        seed: seed of the stimulus generator.
        role: draw the stimulus ids from this corpus vocabulary role (e.g. ``content``) instead of
            token_low/token_high; None = the explicit range, checked against the corpus's ``content`` role.
        vocab: the vocabulary size V behind ``token_high=None`` (V − 100): "model" = the lm_head rows,
            "tokenizer" = the tokenizer saved beside the checkpoint, as the research code (docs/research.md#stimuli).
    """

    name = "induction"

    def __init__(self, n: int = 64, n_samples: int = 20, ks: Sequence[int] = tuple(range(1, 11)),
                 aggregate: Literal["mean_pattern", "per_sample_max"] = "mean_pattern", token_low: int = 100,
                 token_high: int | None = None, batch_size: int | None = None, seed: int = 0,
                 role: str | None = None, vocab: VocabSource = "model") -> None:
        for field, value, low in (("n", n, 2), ("n_samples", n_samples, 1), ("token_low", token_low, 0),
                                  ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ProbeError(f"InductionProbe.{field}: must be an integer >= {low}, got {value!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ProbeError(f"InductionProbe.batch_size: must be an integer >= 1 or None, got {batch_size!r}")
        ks = tuple(ks)
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n for k in ks):
            raise ProbeError(f"InductionProbe.ks: every k must be an integer in [1, n - 1 = {n - 1}], got {list(ks)}")
        if aggregate not in ("mean_pattern", "per_sample_max"):
            raise ProbeError(f"InductionProbe.aggregate: must be 'mean_pattern' or 'per_sample_max', got {aggregate!r}")
        if token_high is not None and token_high <= token_low:
            raise ProbeError(f"InductionProbe.token_high: must exceed token_low = {token_low}, got {token_high}")
        self.n, self.n_samples, self.ks, self.aggregate = n, n_samples, ks, aggregate
        self.token_low, self.token_high, self.batch_size, self.seed = token_low, token_high, batch_size, seed
        self.role, self._role_range = role, None
        if vocab not in ("tokenizer", "model"):
            raise ProbeError(f"InductionProbe.vocab: must be 'tokenizer' or 'model', got {vocab!r}")
        self.vocab = vocab

    def required_roles(self) -> tuple[str, ...]:
        """The configured ``role``, if any."""
        return () if self.role is None else (self.role,)

    def bind(self, vocabulary: Vocabulary) -> None:
        """Take the stimulus range from ``role``, or check the explicit range against the ``content`` role.

        Args:
            vocabulary: the corpus vocabulary.
        """
        if self.role is not None:
            self._role_range = role_range("InductionProbe.role", vocabulary, self.role)
        elif "content" in vocabulary.roles:
            check_in_role("InductionProbe.token_low/token_high", self.token_range(vocabulary.size), vocabulary, "content")

    def token_range(self, vocab_size: int) -> tuple[int, int]:
        """The stimulus id range [low, high) for a vocabulary.

        Args:
            vocab_size: the model's vocabulary size.
        """
        if self.role is not None:
            return role_range("InductionProbe.role", None, self.role) if self._role_range is None else self._role_range
        return self.token_low, vocab_size - 100 if self.token_high is None else self.token_high

    def validate(self, adapter: ModelAdapter) -> None:
        """Stimulus length within the context; stimulus ids within the vocabulary.

        Args:
            adapter: the model's adapter.
        """
        if adapter.max_positions is not None and 2 * self.n > adapter.max_positions:
            raise ProbeError(f"InductionProbe.n: the stimulus of 2n = {2 * self.n} tokens exceeds the model's "
                             f"context {adapter.max_positions}")
        low, high = self.token_range(adapter.vocab_size)
        if high > adapter.vocab_size:
            raise ProbeError(f"InductionProbe.token_high: {high} exceeds the vocabulary size {adapter.vocab_size}")
        if high <= low:
            raise ProbeError(f"InductionProbe.token_low: {low} leaves no ids below token_high = {high} "
                             f"(vocabulary {adapter.vocab_size}; token_high=None means vocabulary - 100)")

    def stimulus(self, vocab_size: int) -> Tensor:
        """The seeded ``[n_samples, 2n]`` stimulus (identical at every call).

        Args:
            vocab_size: the model's vocabulary size.
        """
        low, high = self.token_range(vocab_size)
        return repeated_random_tokens(self.n, self.n_samples, low, high, self.generator())

    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict[str, Any]:
        """The ``induction`` fragment of the probe JSON.

        Args:
            model: HF causal LM.
            heldout: unused (the stimulus is random tokens).
        """
        adapter = ModelAdapter.from_model(model)
        self.validate(adapter)
        vocab = vocab_bound(model, adapter.vocab_size, self.vocab)
        patterns = attention_patterns(model, self.stimulus(vocab), self.batch_size or DEFAULT_BATCH)
        return induction_scores(patterns.double(), self.n, self.ks, self.aggregate)

    def scalars(self, result: dict[str, Any]) -> dict[str, float]:
        """``induction/k_order/k<k>``, ``induction/standard``, ``induction/duplicate``, ``induction/previous``.

        Args:
            result: the output of ``run``.
        """
        out = {f"induction/k_order/k{k}": float(v) for k, v in zip(self.ks, result["k_order"])}
        out.update({f"induction/{key}": float(result[key]) for key in ("standard", "duplicate", "previous")})
        return out

    def heatmaps(self, result: dict[str, Any]) -> dict[str, Any]:
        """Layer × head matrices of the standard, duplicate, previous and first k-order scores.

        Args:
            result: the output of ``run``.
        """
        per_head = result["per_head"]
        out = {f"induction_{key}": per_head[key] for key in ("standard", "duplicate", "previous")}
        out[f"induction_k_order_k{self.ks[0]}"] = per_head["k_order"][0]
        return out

    def step_columns(self, result: dict[str, Any]) -> dict[str, list[float]]:
        """Per layer, the best head's standard induction and duplicate-token score.

        Args:
            result: the output of ``run``.
        """
        per_head = result["per_head"]
        return {f"induction_{key}_by_layer": torch.as_tensor(per_head[key], dtype=torch.float64).amax(1).tolist()
                for key in ("standard", "duplicate")}  # [L, H] -> [L]
