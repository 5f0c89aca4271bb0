"""The ``Probe`` base class: what the ``ProbeRunner`` callback (and ``probe-olmo``) call on every probe.

A probe is configured by its typed ``__init__`` (jsonargparse turns the documented arguments into the
callback config), checked once against the model by ``validate`` (start-up, before any training), and
run at every probe step by ``run``, which must be pure: the stimuli come from a ``torch.Generator``
seeded by the probe's ``seed``, so every checkpoint (and every rank) sees the same inputs. The callback
only schedules, calls ``run`` and logs through ``scalars`` / ``heatmaps`` / ``step_columns``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hierlatent.corpora.base import Vocabulary
from hierlatent.errors import ProbeError
from hierlatent.probes.adapter import ModelAdapter


class Probe(ABC):
    """Base class of all probes.

    Subclasses set ``name`` (the top-level key of the probe JSON; a dotted name such as
    ``"induction.icl"`` nests the fragment) and implement ``run``.
    """

    name: ClassVar[str]
    #: the probe cannot run without held-out corpus windows (no random-token fallback)
    needs_heldout: ClassVar[bool] = False
    seed: int = 0

    def required_roles(self) -> tuple[str, ...]:
        """Vocabulary roles this probe cannot run without, as configured (the runner refuses it otherwise)."""
        return ()

    def bind(self, vocabulary: Vocabulary) -> None:
        """Receive the corpus vocabulary at start-up (``ProbeRunner.setup``); default: nothing to do.

        Probes that read roles (``roles: content`` in a config) store them here; explicit id ranges are
        checked against the roles here (``ProbeError`` naming the argument).

        Args:
            vocabulary: the training corpus's vocabulary with its named roles.
        """

    def validate(self, adapter: ModelAdapter) -> None:
        """Raise ``ProbeError`` naming the argument when this probe cannot run on the model.

        Args:
            adapter: the adapter of the model the probe will run on.
        """

    @abstractmethod
    def run(self, model: nn.Module, heldout: Tensor | None = None) -> dict[str, Any]:
        """The probe's JSON fragment (plain floats/lists or tensors; the callback converts them).

        Args:
            model: the HF causal LM (the caller holds it in ``probe_mode``; probes may nest their own).
            heldout: held-out corpus windows ``[n, T]`` from the data module, or None.
        """

    def scalars(self, result: dict[str, Any]) -> dict[str, float]:
        """TensorBoard scalars, tag (without the ``probes/`` prefix) -> value.

        Args:
            result: the output of ``run``.
        """
        return {}

    def heatmaps(self, result: dict[str, Any]) -> dict[str, Any]:
        """Per-checkpoint matrices (e.g. layer x head), image name -> 2-D array.

        Args:
            result: the output of ``run``.
        """
        return {}

    def step_columns(self, result: dict[str, Any]) -> dict[str, list[float]]:
        """Per-layer vectors the callback stacks into growing layer x step heatmaps, name -> column.

        Args:
            result: the output of ``run``.
        """
        return {}

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with ``self.seed``: the same stimuli at every call."""
        return torch.Generator().manual_seed(int(self.seed))


def role_range(where: str, vocabulary: Vocabulary | None, role: str) -> tuple[int, int]:
    """The id range ``[lo, hi)`` of ``role``; ProbeError naming ``where`` when it is unknown or unbound.

    Args:
        where: the probe argument that names the role, e.g. ``"InductionProbe.role"``.
        vocabulary: the bound vocabulary (None: the probe was never bound to a corpus).
        role: role name.
    """
    if vocabulary is None:
        raise ProbeError(f"{where}: role {role!r} needs the corpus vocabulary, but the probe was not bound to a corpus "
                         "(run it through a fit with a data module, or give explicit ids)")
    if role not in vocabulary.roles:
        raise ProbeError(f"{where}: the corpus has no role {role!r} (it has: {', '.join(vocabulary.roles) or 'none'})")
    return vocabulary.roles[role]


def check_in_role(where: str, ids: tuple[int, int], vocabulary: Vocabulary, role: str) -> None:
    """Explicit ids ``[lo, hi)`` must lie inside ``role`` of a vocabulary that has it (ProbeError naming ``where``).

    Args:
        where: the probe argument holding the ids.
        ids: half-open id range.
        vocabulary: the bound vocabulary.
        role: the role the ids must belong to.
    """
    lo, hi = role_range(where, vocabulary, role)
    if not lo <= ids[0] < ids[1] <= hi:
        raise ProbeError(f"{where}: ids [{ids[0]}, {ids[1]}) are not inside the corpus's {role!r} role [{lo}, {hi})")
