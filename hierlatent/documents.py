"""Probe documents (docs/probes_json.md): where a probe's fragment lives in the per-checkpoint JSON.

A leaf module (no torch, no Lightning), shared by the ``ProbeRunner`` that writes the documents and by
``plot`` and ``probe-olmo``'s report that read them: a probe named ``a.b`` lives at ``doc["a"]["b"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def merge_fragment(doc: dict, name: str, fragment: dict) -> None:
    """Put a probe's fragment at ``doc[name]`` (dotted names nest: ``induction.icl``), merging dicts.

    Args:
        doc: the probe document, changed in place.
        name: the probe's name.
        fragment: the probe's result.
    """
    *parents, leaf = name.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    if isinstance(node.get(leaf), dict) and isinstance(fragment, dict):
        node[leaf] = {**node[leaf], **fragment}
    else:
        node[leaf] = fragment


def extract_fragment(doc: dict, name: str | Sequence[str]) -> Any:
    """Inverse of ``merge_fragment``: the value at a dotted name (or a key path) of a document, or None.

    Args:
        doc: the probe document.
        name: a dotted probe name (``induction.icl``) or a tuple of keys (``("hydra", "paper", "k1")``).
    """
    node: Any = doc
    for key in name.split(".") if isinstance(name, str) else name:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
