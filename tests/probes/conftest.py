"""Fixtures of the probe tests: tiny models (helpers import as ``tests.probes.*``, pytest's ``pythonpath``)."""

from __future__ import annotations

import pytest


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
