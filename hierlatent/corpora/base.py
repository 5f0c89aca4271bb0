"""The corpus-generator contract every generator implements (their shared argument checks: ``hierlatent.checks``).

A generator is a typed, seedable recipe. Its ``__init__`` signature (with one-line docstrings per
argument) *is* the config schema that jsonargparse exposes under ``data.generator``; every argument
is stored on ``self`` under the same name so ``hparams()`` can record it in ``meta.json`` and hash it.

Generation is sharded: a split is a sequence of shards, and ``generate_shard(split, i, context)`` is a
pure function of (config, split, i, context). That is what makes the output byte-identical whatever
the number of worker processes, lets shards run in parallel, and lets a killed run resume by keeping
finished shards. ``prepare_context`` builds read-only state once per split, which the store hands to
every worker (picklable; e.g. the PCFG test-split sentence set that training sentences must avoid).
Splits are generated in ``split_order`` so a later split's context may read an earlier, finished split
from ``corpus_dir``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# the argument checks live in the leaf module hierlatent.checks; re-exported for the generators that import them here
from hierlatent.checks import (check_distribution, check_int, check_nonnegative, check_positive,  # noqa: F401
                               check_probability)
from hierlatent.errors import ConfigError

SPLITS = ("train", "test")
#: the split's number in every generator's random-stream key (seed, split, …): changing it changes every corpus
SPLIT_IDS = {"train": 1, "test": 2}
#: the special tokens after every vocabulary's content, in id order (``tail_vocabulary``): ``[EOS] [UNK] [PAD]``
SPECIAL_TAIL = ("eos", "unk", "pad")


#: role names a generator may declare in ``Vocabulary.roles`` (docs/theory.md, "Vocabulary roles")
ROLE_NAMES = ("subjects", "verbs", "objects", "connectors", "evidence", "query", "cue", "content", "special")


@dataclass(frozen=True)
class Vocabulary:
    """Token strings indexed by id, the special tokens' ids (keys ``eos``, ``unk``, ``pad``), and named roles.

    ``roles`` maps a role name (``ROLE_NAMES``) to a half-open id range ``(lo, hi)``: what the probes read
    instead of id ranges typed into configs (``content``: every non-special token; ``special``: the tail
    ``[EOS] [UNK] [PAD]``; PCFG: subjects/verbs/objects/connectors; toy: evidence/query/cue).
    """

    tokens: tuple[str, ...]
    special: dict[str, int] = field(default_factory=dict)
    roles: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (lo, hi) in self.roles.items():
            if name not in ROLE_NAMES:
                raise ConfigError(f"Vocabulary.roles: unknown role {name!r} (known: {', '.join(ROLE_NAMES)})")
            if not 0 <= lo < hi <= len(self.tokens):
                raise ConfigError(f"Vocabulary.roles[{name!r}]: ({lo}, {hi}) is not a range inside [0, {len(self.tokens)})")

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def dtype(self) -> np.dtype:
        """Smallest unsigned dtype holding every id: uint16, or uint32 when the vocabulary needs it."""
        if self.size <= 2**16:
            return np.dtype("<u2")
        if self.size <= 2**32:
            return np.dtype("<u4")
        raise ConfigError(f"vocabulary of {self.size} tokens is too large for uint32 shards")


class CorpusGenerator(ABC):
    """Base class of all corpus generators (select one with ``class_path`` in YAML)."""

    #: short name used in the cache directory name ``<name>-<hash>``
    name: ClassVar[str] = "corpus"
    #: order in which splits are generated; a later split's ``prepare_context`` may read earlier ones
    split_order: ClassVar[tuple[str, ...]] = ("test", "train")

    def __init__(self, seed: int = 0) -> None:
        """
        Args:
            seed: master seed; the whole corpus is a deterministic function of the config and this seed.
        """
        self.seed = check_int("seed", seed, minimum=0)

    # -- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def vocabulary(self) -> Vocabulary:
        """The token strings and special ids (the tokenizer is built from this)."""

    @abstractmethod
    def shard_counts(self) -> dict[str, int]:
        """Number of shards per split, e.g. ``{"test": 1, "train": 40}``."""

    @abstractmethod
    def generate_shard(self, split: str, index: int, context: Any = None) -> np.ndarray:
        """Token ids of one shard (1-D, starts at a document boundary); a pure function of its inputs."""

    @abstractmethod
    def expected_tokens(self, split: str) -> int:
        """Expected (or exact) number of tokens of a split, for progress bars and the disk-space check."""

    @abstractmethod
    def reference_losses(self) -> dict[str, float]:
        """Best achievable loss (nats/token) this generator can compute or bound; keys documented per class."""

    def prepare_context(self, corpus_dir: Path, split: str) -> Any:
        """Read-only state for generating ``split``, built once and given to every shard (default: none)."""
        return None

    # -- shared machinery ---------------------------------------------------------------------
    @classmethod
    def class_path(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments, read back from the attributes of the same name."""
        params = {}
        for klass in type(self).__mro__:
            if klass is object or "__init__" not in vars(klass):
                continue
            for name in inspect.signature(klass.__init__).parameters:
                if name not in ("self", "args", "kwargs") and name not in params:
                    params[name] = _jsonable(getattr(self, name))
        return dict(sorted(params.items()))

    def config_hash(self) -> str:
        """Stable 12-hex-digit hash of class path and arguments: the cache directory suffix."""
        blob = json.dumps({"class_path": self.class_path(), "init_args": self.hparams()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def cache_name(self) -> str:
        return f"{self.name}-{self.config_hash()}"


def tail_vocabulary(tokens: Sequence[str], n_content: int | None = None, special: Mapping[str, int] | None = None,
                    **roles: tuple[int, int]) -> Vocabulary:
    """Every generator's layout: ``tokens`` then the special tail ``[EOS] [UNK] [PAD]`` (``SPECIAL_TAIL``).

    ``special`` gets the tail's ids (``eos``, ``unk``, ``pad``) and ``roles`` the ``content`` range (the first
    ``n_content`` ids) and the ``special`` range (the tail).

    Args:
        tokens: the token strings before the tail.
        n_content: how many leading tokens are content words (default: all of ``tokens``; the toy corpus's
            ``[QUERY]`` cue sits after its content and before the tail).
        special: special ids of ``tokens`` themselves, e.g. ``{"query": id}``.
        roles: the generator's own roles (name -> half-open id range).
    """
    n = len(tokens)
    tail = {name: n + i for i, name in enumerate(SPECIAL_TAIL)}
    spans = {**roles, "content": (0, n if n_content is None else n_content), "special": (n, n + len(SPECIAL_TAIL))}
    return Vocabulary(tuple(tokens) + tuple(f"[{name.upper()}]" for name in SPECIAL_TAIL), {**(special or {}), **tail},
                      spans)


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats of a probability vector (zero entries contribute nothing)."""
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value
