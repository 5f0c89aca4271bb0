"""Checkpoint revision names: the step (and token count) a name like ``step20000-tokens84B`` carries.

A leaf module (imports nothing of hierlatent), so ``probe-olmo`` (discovery) and ``plot`` (placing a
revision on a step axis) read names the same way.
"""

from __future__ import annotations

import re

#: ``step<N>`` (also ``step-<N>``, ``step_<N>``, any case) anywhere in the name, optionally ``-tokens<M><unit>``
STEP_RE = re.compile(r"step[-_]?(\d+)(?:-tokens(\d+)([KMBT]?))?", re.IGNORECASE)
#: multipliers of the token-count suffix (OLMo branch names: ``tokens84B`` = 84·10⁹)
TOKEN_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parse_revision(name: str) -> tuple[int, int | None] | None:
    """``(step, tokens)`` of a revision name, ``tokens`` None without a ``-tokens`` part; None without a step.

    ``step20000-tokens84B`` -> (20000, 84·10⁹); ``step143000`` and ``step-1200`` (a fit export) -> (step, None);
    ``stage1-step1000-tokens4B`` -> (1000, 4·10⁹) (the step may follow a prefix); ``main`` -> None.

    Args:
        name: the revision (branch or directory) name.
    """
    m = STEP_RE.search(name)
    if m is None:
        return None
    tokens = int(m.group(2)) * TOKEN_UNITS[m.group(3).upper()] if m.group(2) is not None else None
    return int(m.group(1)), tokens
