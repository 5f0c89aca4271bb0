"""Typed checks of scalar arguments: each returns the value normalised or raises ``ConfigError`` naming the field.

The one validation style of the package: corpora, the data module, the model and the module call these
with the name the user wrote (``n_words``, ``data.batch_size``, ``--model.lr``), so every message reads
``<name>: must be ..., got <value>``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from hierlatent.errors import ConfigError


def check_int(name: str, value: Any, minimum: int = 1, meaning: str = "") -> int:
    """An integer >= ``minimum`` (numpy integers too, never a bool).

    Args:
        name: the field named in the error.
        value: the value to check.
        minimum: the smallest value allowed.
        meaning: what the value means, shown in parentheses after the rule (e.g. ``-1 = no step limit``).
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        note = f" ({meaning})" if meaning else ""
        raise ConfigError(f"{name}: must be an integer >= {minimum}{note}, got {value!r}")
    return int(value)


def check_fraction_or_count(name: str, value: Any) -> int | float:
    """Lightning's ``limit_*_batches`` / ``val_check_interval`` rule: a float is a fraction of the epoch in [0, 1],
    an integer a count of batches >= 0.

    Args:
        name: the field named in the error.
        value: the value to check.
    """
    if not isinstance(value, float):
        return check_int(name, value, minimum=0)
    if not 0.0 <= value <= 1.0:
        # 5.0 usually means "every 5 batches": say how to write that
        hint = f"; for every {int(value)} batches give the integer {int(value)}" if value.is_integer() else ""
        raise ConfigError(f"{name}: a float is a fraction of the epoch in [0, 1], got {value}{hint}")
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(name: str, value: Any, low: float = 0.0, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False) -> float:
    """A finite real number in the interval from ``low`` to ``high`` (no upper bound when ``high`` is None).

    Args:
        name: the field named in the error.
        value: the value to check.
        low: the lower bound.
        high: the upper bound, or None.
        low_open: exclude ``low`` itself.
        high_open: exclude ``high`` itself.
    """
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        raise ConfigError(f"{name}: must be a number {_interval(low, high, low_open, high_open)}, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """A finite real number > 0."""
    return check_number(name, value, 0.0, low_open=True)


def check_nonnegative(name: str, value: Any) -> float:
    """A finite real number >= 0."""
    return check_number(name, value, 0.0)


def check_probability(name: str, value: Any) -> float:
    """A real number in [0, 1]."""
    return check_number(name, value, 0.0, 1.0)


def check_distribution(name: str, values: Any, atol: float = 1e-6) -> tuple[float, ...]:
    """A non-empty sequence of probabilities summing to 1.

    Args:
        name: the field named in the error (an entry is ``name[i]``).
        values: the sequence to check.
        atol: allowed deviation of the sum from 1.
    """
    try:
        probs = tuple(check_probability(f"{name}[{i}]", v) for i, v in enumerate(values))
    except TypeError as exc:
        raise ConfigError(f"{name}: must be a list of probabilities, got {values!r}") from exc
    if not probs or abs(sum(probs) - 1.0) > atol:
        raise ConfigError(f"{name}: probabilities must sum to 1, got {sum(probs):.6g}")
    return probs
