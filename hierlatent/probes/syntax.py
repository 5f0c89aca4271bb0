"""Syntax probe (docs/research.md#syntax): does the model's next-token distribution follow the PCFG's role order?

For random prompts ``s v o c`` (a subject, verb, object and connector drawn uniformly from their id
ranges), the probability mass the model puts on
- verbs after ``[s]``            -> ``verb_after_subject``,
- objects after ``[s v]``        -> ``object_after_subject_verb``,
- subjects after ``[s v o c]``   -> ``subject_after_svoc``,
averaged over samples. A causal model's prediction after a prefix does not depend on later tokens, so all
three come from ONE batched forward over the ``[S, 4]`` prompts (read at positions 0, 1 and 3). Id ranges
come from the corpus vocabulary's roles (docs/research.md#pcfg; the paper's subjects 0–299, verbs 300–599,
objects 600–899, connectors 900–999); ``prefix`` (e.g. ``[1000]``, the EOS that precedes a sentence in the
corpus) is prepended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter, logits_at
from hierlatent.probes.base import Probe, ReadsRoles, id_range

KEYS = ("verb_after_subject", "object_after_subject_verb", "subject_after_svoc")
# (prompt position read, role whose mass is measured) per key, for prompts s v o c
_READS = ((0, "verbs"), (1, "objects"), (3, "subjects"))


def role_mass(probs: Tensor, low: int, high: int) -> Tensor:
    """Probability mass on ids [low, high).

    Args:
        probs: probabilities ``[..., V]``.
        low: first id of the range.
        high: end of the range (exclusive).
    """
    return probs[..., low:high].sum(-1)


class SyntaxProbe(ReadsRoles, Probe):
    """Role-order probability masses after random subject / subject-verb / subject-verb-object-connector prompts.

    The id ranges default to the corpus's roles (bound at start-up, ``ReadsRoles``); an explicit range must
    lie inside its role, and a corpus without the roles the probe reads (n-gram) refuses it.

    Args:
        n_samples: number of random prompts.
        subjects: subject id range [low, high); None = the corpus's ``subjects`` role.
        verbs: verb id range [low, high); None = the ``verbs`` role.
        objects: object id range [low, high); None = the ``objects`` role.
        connectors: connector id range [low, high); None = the ``connectors`` role.
        prefix: token ids prepended to every prompt (e.g. [1000] = the PCFG EOS); empty = none (the research code).
        batch_size: prompts per forward (None = all at once).
        seed: seed of the prompt generator.
    """

    name = "syntax"
    #: each range argument reads the corpus role of the same name
    role_args = {role: role for role in ("subjects", "verbs", "objects", "connectors")}

    def __init__(self, n_samples: int = 100, subjects: tuple[int, int] | None = None,
                 verbs: tuple[int, int] | None = None, objects: tuple[int, int] | None = None,
                 connectors: tuple[int, int] | None = None, prefix: Sequence[int] = (),
                 batch_size: int | None = None, seed: int = 0) -> None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ProbeError(f"SyntaxProbe.n_samples: must be an integer >= 1, got {n_samples!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ProbeError(f"SyntaxProbe.batch_size: must be an integer >= 1 or None, got {batch_size!r}")
        self._given = {field: id_range(f"SyntaxProbe.{field}", value) for field, value in
                       (("subjects", subjects), ("verbs", verbs), ("objects", objects), ("connectors", connectors))}
        self._ranges: dict[str, tuple[int, int]] | None = None
        self.prefix = [int(t) for t in prefix]
        if any(t < 0 for t in self.prefix):
            raise ProbeError(f"SyntaxProbe.prefix: token ids must be >= 0, got {list(prefix)}")
        self.n_samples, self.batch_size, self.seed = n_samples, batch_size, seed

    def validate(self, adapter: ModelAdapter) -> None:
        """Every id range and the prefix inside the vocabulary; the prompt inside the context.

        Args:
            adapter: the model's adapter.
        """
        for field, (_, high) in self.ranges.items():
            if high > adapter.vocab_size:
                raise ProbeError(f"SyntaxProbe.{field}: range end {high} exceeds the model's vocabulary size "
                                 f"{adapter.vocab_size}")
        if any(t >= adapter.vocab_size for t in self.prefix):
            raise ProbeError(f"SyntaxProbe.prefix: ids {self.prefix} must be < the vocabulary size "
                             f"{adapter.vocab_size}")
        if adapter.max_positions is not None and len(self.prefix) + 4 > adapter.max_positions:
            raise ProbeError(f"SyntaxProbe.prefix: prompts of {len(self.prefix) + 4} tokens exceed the model's "
                             f"context {adapter.max_positions}")

    def prompts(self) -> Tensor:
        """The seeded ``[n_samples, len(prefix) + 4]`` prompts ``prefix s v o c``."""
        gen = self.generator()
        roles = [torch.randint(lo, hi, (self.n_samples, 1), generator=gen)
                 for lo, hi in (self.ranges[r] for r in ("subjects", "verbs", "objects", "connectors"))]
        prefix = torch.tensor(self.prefix, dtype=torch.long).expand(self.n_samples, len(self.prefix))
        return torch.cat([prefix, *roles], dim=1)

    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict[str, Any]:
        """The ``syntax`` fragment: the three mean probability masses.

        Args:
            model: HF causal LM.
            heldout: unused (the prompts are random role tokens).
        """
        adapter = ModelAdapter.from_model(model)
        self.validate(adapter)
        read = torch.tensor([len(self.prefix) + pos for pos, _ in _READS], device=adapter.device)
        probs = logits_at(model, self.prompts(), read, self.batch_size).double().softmax(-1)  # [S, 3, V]
        return {key: role_mass(probs[:, i], *self.ranges[role]).mean() for i, (key, (_, role)) in
                enumerate(zip(KEYS, _READS))}

    def scalars(self, result: dict[str, Any]) -> dict[str, float]:
        """``syntax/<key>`` for the three keys.

        Args:
            result: the output of ``run``.
        """
        return {f"syntax/{key}": float(result[key]) for key in KEYS}
