"""Real tiny runs for the reviewer tests: a 3-layer Llama trained a few steps with the project's logger and
a ProbeRunner (induction, Hydra k = 1, 2 with McGrath, function vectors), laid out as one run and as a
2-condition x 2-seed sweep directory ``D/<condition>/seed-<s>/`` (the sweep format's logger flags).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

VOCAB = 64


def _module(seed: int, lr: float):
    from tests.callbacks.runner_helpers import TinyLM

    class LoggedLM(TinyLM):
        """TinyLM that logs ``train/loss`` and a ``reference/uniform`` loss like LanguageModel does."""

        def on_train_start(self) -> None:
            self.logger.log_metrics({"reference/uniform": math.log(VOCAB)}, step=0)

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            import torch

            return torch.optim.SGD(self.parameters(), lr=lr)

    return LoggedLM(seed=seed, vocab=VOCAB, n_layers=3)


def fit_tiny(save_dir: Path, name: str, version: str, seed: int, lr: float = 0.1, steps: int = 6) -> Path:
    """Train one tiny run into ``<save_dir>/<name>/<version>/`` with probes at steps 0, 3, 6; its log dir.

    Args:
        save_dir: the logger's save_dir.
        name: the logger's name (a sweep's condition).
        version: the logger's version (``seed-<s>`` in a sweep).
        seed: seed of the weights (``seed_everything``).
        lr: SGD learning rate.
        steps: training steps.
    """
    import lightning as L
    from tests.callbacks.runner_helpers import TinyData

    from hierlatent.callbacks.probes import ProbeRunner
    from hierlatent.probes.function_vectors import FunctionVectorProbe
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.induction import InductionProbe
    from hierlatent.trainer import ResumableTensorBoardLogger

    L.seed_everything(seed)
    probes = [
        InductionProbe(n=8, n_samples=2, ks=[1, 2, 3], token_low=0, token_high=VOCAB, seed=0),
        HydraProbe(ks=[1, 2], n_heldout=4, mcgrath=True, batch_size=4),
        FunctionVectorProbe(n_pairs=4, connector=60, subject_range=(0, 20), verb_range=(20, 40), object_range=(40, 60), todd=False),
    ]
    runner = ProbeRunner(probes, every_n_steps=3, on_checkpoint=False, on_train_start=True, n_heldout=4, log_images=False)
    logger = ResumableTensorBoardLogger(save_dir=str(save_dir), name=name, version=version)
    trainer = L.Trainer(max_steps=steps, logger=logger, log_every_n_steps=1, callbacks=[runner], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu", devices=1)
    trainer.fit(_module(seed, lr), TinyData(VOCAB))
    return Path(trainer.log_dir)


def make_sweep(root: Path) -> Path:
    """A 2-condition x 2-seed sweep directory with its manifest; returns D."""
    runs = []
    for cond, lr in (("fast", 0.2), ("slow", 0.05)):
        for seed in (0, 1):
            log_dir = fit_tiny(root, cond, f"seed-{seed}", seed, lr)
            runs.append({"condition": cond, "seed": seed, "log_dir": str(log_dir), "status": "finished"})
    (root / "manifest.json").write_text(json.dumps({"runs": runs, "paired": False}))
    return root
