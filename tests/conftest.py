"""Shared pytest fixtures: an isolated corpus cache and a tiny in-memory data module.

``tmp_cache`` points ``HIERLATENT_CACHE`` at a fresh temp directory (also inherited by subprocesses
started from the test), so no test reads or writes the user's cache.
"""

from __future__ import annotations

import pytest

from hltest import RandomTokens  # noqa: F401  (re-exported for fixtures)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A fresh ``HIERLATENT_CACHE`` directory for this test; returns its path."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HIERLATENT_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_datamodule():
    """Factory: ``tiny_datamodule(context_window=16, batch_size=4, **kw)`` -> CorpusDataModule over RandomTokens arrays."""
    from hierlatent.data import CorpusDataModule, TokenWindows

    def make(context_window: int = 16, batch_size: int = 4, seed: int = 0, **kwargs) -> CorpusDataModule:
        gen = RandomTokens(seed=seed)
        dm = CorpusDataModule(gen, context_window=context_window, batch_size=batch_size, **kwargs)
        dm.attach(
            TokenWindows.from_arrays([gen.generate_shard("train", 0)], context_window),
            TokenWindows.from_arrays([gen.generate_shard("test", 0)], context_window),
        )
        return dm

    return make
