"""The ``Probe`` base class: what the ``ProbeSuite`` (of the ``ProbeRunner`` callback and ``probe-olmo``) calls on every probe.

A probe is configured by its typed ``__init__`` (jsonargparse turns the documented arguments into the
callback config), given the corpus vocabulary by ``bind`` and checked once against the model by
``validate`` (start-up, before any training), and run at every probe step by ``run``, which must be pure:
the stimuli come from a ``torch.Generator`` seeded by the probe's ``seed``, so every checkpoint (and every
rank) sees the same inputs. The suite calls ``run`` and logs through ``scalars`` / ``heatmaps`` / ``step_columns``.

Token ids come from the vocabulary's named roles (``bind_roles``): an argument left ``None`` reads its role,
an explicit id range must lie inside it. A probe never bound (Python use without a corpus) reads the roles
of the paper's PCFG vocabulary, ``PCFGDocuments()`` at its defaults (docs/research.md#pcfg).
"""

from __future__ import annotations

import functools
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
        """Receive the corpus vocabulary at start-up (``ProbeSuite.bind``); default: nothing to do.

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
        shown = f"id {ids[0]}" if ids[1] == ids[0] + 1 else f"({ids[0]}, {ids[1]})"
        raise ProbeError(f"{where}: {shown} is not inside the corpus role {role!r} ({lo}, {hi})")


@functools.lru_cache(maxsize=1)
def paper_vocabulary() -> Vocabulary:
    """The paper's PCFG vocabulary (``PCFGDocuments()`` at its defaults): the roles of a probe never bound."""
    from hierlatent.corpora.pcfg import PCFGDocuments  # lazily: its kernels compile only when it is needed

    return PCFGDocuments().vocabulary()


def bind_roles(owner: str, given: dict[str, tuple[int, int] | None], roles: dict[str, str],
               vocabulary: Vocabulary | None) -> dict[str, tuple[int, int]]:
    """Each argument's id range: its role's range when ``None``, else the explicit range, checked inside the role
    when the vocabulary has that role (explicit ids need no role: they are what the user asked for).

    Args:
        owner: the probe class name, for the messages (``FunctionVectorProbe.subject_range: …``).
        given: argument name -> explicit half-open range, or None to read the role.
        roles: argument name -> role name.
        vocabulary: the bound vocabulary; None = not bound: explicit ranges stand unchecked, the others
            come from ``paper_vocabulary()``.
    """
    out = {}
    for field, value in given.items():
        where = f"{owner}.{field}"
        if value is None:
            out[field] = role_range(where, paper_vocabulary() if vocabulary is None else vocabulary, roles[field])
        else:
            if vocabulary is not None and roles[field] in vocabulary.roles:  # a corpus without the role cannot check
                check_in_role(where, value, vocabulary, roles[field])
            out[field] = value
    return out


def roles_left_to_corpus(given: dict[str, Any], roles: dict[str, str]) -> tuple[str, ...]:
    """The roles of the arguments left ``None`` (what ``required_roles`` reports).

    Args:
        given: argument name -> explicit value or None.
        roles: argument name -> role name.
    """
    return tuple(dict.fromkeys(roles[f] for f, v in given.items() if v is None))


def id_range(where: str, value: Any) -> tuple[int, int] | None:
    """An explicit half-open id range ``[lo, hi)`` with ``0 <= lo < hi`` (or None), else ProbeError naming ``where``.

    Args:
        where: the probe argument, e.g. ``"SyntaxProbe.verbs"``.
        value: the configured value.
    """
    if value is None:
        return None
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in pair) or not 0 <= pair[0] < pair[1]:
        raise ProbeError(f"{where}: must be a half-open id range [lo, hi) with 0 <= lo < hi, or null for the corpus "
                         f"role, got {value!r}")
    return int(pair[0]), int(pair[1])


class ReadsRoles:
    """Mixin of a probe whose id arguments read corpus roles (``role_args``: argument -> role name).

    The subclass stores its explicit arguments (None = read the role) in ``self._given`` and sets
    ``self._ranges = None``; ``bind`` resolves them and ``ranges`` holds the result.
    """

    role_args: ClassVar[dict[str, str]] = {}
    _given: dict[str, tuple[int, int] | None]
    _ranges: dict[str, tuple[int, int]] | None

    def required_roles(self) -> tuple[str, ...]:
        """The roles of the id arguments left to the corpus."""
        return roles_left_to_corpus(self._given, self.role_args)

    def bind(self, vocabulary: Vocabulary) -> None:
        """Read the ids left None from the corpus roles; check the explicit ones against them.

        Args:
            vocabulary: the corpus vocabulary.
        """
        self._ranges = bind_roles(type(self).__name__, self._given, self.role_args, vocabulary)

    @property
    def ranges(self) -> dict[str, tuple[int, int]]:
        """The bound id ranges, argument -> [lo, hi) (never bound: the paper's roles, module docstring)."""
        if self._ranges is None:
            self._ranges = bind_roles(type(self).__name__, self._given, self.role_args, None)
        return self._ranges
