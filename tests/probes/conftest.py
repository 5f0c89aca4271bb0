"""Fixtures of the probe tests: the repo root on sys.path (for ``tests.probes.*`` helpers) and tiny models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def planted():
    """The planted duplicate / previous-token / induction GPT-2 (V = 48, n = 16)."""
    from tests.probes.planted import planted_induction_gpt2

    return planted_induction_gpt2()


@pytest.fixture
def unique_stimulus():
    """Five r‖r sequences with n = 16 distinct tokens each, from the planted model's 48 ids."""
    import torch

    gen = torch.Generator().manual_seed(0)
    r = torch.stack([torch.randperm(48, generator=gen)[:16] for _ in range(5)])
    return torch.cat([r, r], dim=1)
