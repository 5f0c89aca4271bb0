"""Fixtures of the probe-olmo tests: a series of tiny OLMo revisions (helpers in ``tests.olmo.olmo_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.olmo.olmo_helpers import make_checkpoint


@pytest.fixture(scope="session")
def olmo_series(tmp_path_factory) -> Path:
    """Four OLMo-style revisions with distinct weights."""
    root = tmp_path_factory.mktemp("olmo")
    for i, (step, tok) in enumerate([(0, 0), (1000, 4), (2000, 8), (3000, 12)]):
        make_checkpoint(root / f"step{step}-tokens{tok}B", seed=i)
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core CI box: one intra-op thread is ~10x faster than two spinning ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
