"""Shared test helpers importable from every test (``from hltest import ...``) and by ``class_path`` in configs.

A uniquely named module rather than ``conftest``: several test folders have their own ``conftest.py``, and
``from conftest import`` would resolve to whichever was imported first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from hierlatent.corpora.base import CorpusGenerator, Vocabulary, tail_vocabulary

TESTS_DIR = Path(__file__).resolve().parent


class RandomTokens(CorpusGenerator):
    """Test generator: i.i.d. uniform tokens (learnable only as a unigram), 3 special tokens at the end."""

    name = "random-tokens"

    def __init__(self, seed: int = 0, vocab: int = 61, train_tokens: int = 20000, test_tokens: int = 4000) -> None:
        """
        Args:
            seed: master seed.
            vocab: number of ordinary tokens.
            train_tokens: tokens in the train split (one shard).
            test_tokens: tokens in the test split (one shard).
        """
        super().__init__(seed)
        self.vocab, self.train_tokens, self.test_tokens = vocab, train_tokens, test_tokens

    def vocabulary(self) -> Vocabulary:
        return tail_vocabulary([f"t{i}" for i in range(self.vocab)])

    def shard_counts(self) -> dict[str, int]:
        return {"train": 1, "test": 1}

    def generate_shard(self, split: str, index: int, context: object = None) -> np.ndarray:
        rng = np.random.default_rng([self.seed, split == "train", index])
        return rng.integers(0, self.vocab, self.expected_tokens(split), dtype=np.uint16)

    def expected_tokens(self, split: str) -> int:
        return self.train_tokens if split == "train" else self.test_tokens

    def reference_losses(self) -> dict[str, float]:
        return {"uniform": float(np.log(self.vocab))}


# -- running the real console script ----------------------------------------------------------------
def tiny_fit_config(**overrides) -> dict:
    """A fit config that trains a 2x32 Llama on a RandomTokens corpus in seconds (nested dict, for YAML).

    Args:
        overrides: top-level sections merged into the defaults (``trainer={...}`` updates ``trainer``).
    """
    cfg = {
        "seed_everything": 0,
        "trainer": {"max_steps": 12, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "log_every_n_steps": 1, "val_check_interval": 4,
                    "limit_val_batches": 2, "num_sanity_val_steps": 0},
        "model": {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 64, "context_window": 16, "lr": 3e-3},
        "data": {"generator": {"class_path": "hltest.RandomTokens", "init_args": {"seed": 1}}, "batch_size": 4,
                 "generation_workers": 1},
        "checkpoint": {"every_n_train_steps": 4},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def run_hierlatent(args: list[str], cwd, timeout: float = 300, check: bool = True, env: dict | None = None):
    """Run the installed ``hierlatent`` console script (tests/ on PYTHONPATH for test-only classes).

    ``env``: extra variables for the child only (e.g. ``HIERLATENT_CACHE``), so tests never edit ``os.environ``.
    """
    env = {**os.environ, **(env or {}),
           "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("OMP_NUM_THREADS", "1")
    out = subprocess.run(["hierlatent", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"hierlatent {' '.join(args)} exited {out.returncode}:\n{out.stderr[-4000:]}")
    return out


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of a TensorBoard run directory, as TensorBoard shows them (orphans purged)."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


class ImportRecorder(RandomTokens):
    """Test generator: each train token says whether the generating process had imported Lightning (1) or not (0)."""

    name = "import-recorder"

    def shard_counts(self) -> dict[str, int]:
        return {"train": 4, "test": 1}

    def generate_shard(self, split: str, index: int, context: object = None) -> np.ndarray:
        import sys

        return np.full(self.expected_tokens(split) // 4 if split == "train" else self.test_tokens,
                       int("lightning" in sys.modules), dtype=np.uint16)
