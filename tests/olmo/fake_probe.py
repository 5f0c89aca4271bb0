"""A small deterministic probe for testing the runner and the sweep without the real probe package.

It does real work on the model (a seeded random-token forward pass) so that results differ between
checkpoints and equal across processes; ``trace_dir`` records one file per ``run`` call so tests can
count how often (and on which rank) it ran.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch

from hierlatent.errors import ProbeError
from hierlatent.probes.base import Probe


class FakeProbe(Probe):
    """Mean next-token loss and per-layer hidden-state norms on seeded random tokens.

    Args:
        name: Key of the fragment in the probe document.
        seq_len: Stimulus length (validated against the model's context).
        seed: Stimulus seed.
        trace_dir: If set, every run writes a marker file there (rank, pid).
        fail: Raise during ``run`` (to test error propagation).
    """

    def __init__(self, name: str = "fake", seq_len: int = 16, seed: int = 0, trace_dir: str | None = None,
                 fail: bool = False) -> None:
        self.name, self.seq_len, self.seed, self.trace_dir, self.fail = name, seq_len, seed, trace_dir, fail

    def validate(self, adapter) -> None:
        max_pos = adapter.max_positions
        if max_pos is not None and self.seq_len > max_pos:
            raise ProbeError(f"seq_len={self.seq_len} exceeds the model context {max_pos}")
        if self.seq_len < 2:
            raise ProbeError(f"seq_len={self.seq_len} must be >= 2")

    def run(self, model, heldout=None) -> dict:
        if self.trace_dir:
            rank = os.environ.get("LOCAL_RANK", "0")
            Path(self.trace_dir, f"{self.name}-{rank}-{os.getpid()}-{uuid.uuid4().hex}").touch()
        if self.fail:
            raise RuntimeError("fake probe failure")
        assert not model.training and not torch.is_grad_enabled()
        gen = torch.Generator().manual_seed(self.seed)
        device = next(model.parameters()).device
        ids = torch.randint(0, model.config.vocab_size, (2, self.seq_len), generator=gen).to(device)
        norms = []  # per decoder layer; hooks rather than output_hidden_states, which pickled (spawned) models drop

        def grab(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            norms.append(h.float().norm(dim=-1).mean())

        handles = [layer.register_forward_hook(grab) for layer in model.base_model.layers]
        try:
            out = model(input_ids=ids, labels=ids)
        finally:
            for h in handles:
                h.remove()
        norms = torch.stack(norms)  # [L]
        return {"loss": out.loss.float(), "layer_norms": norms,
                "matrix": torch.stack([norms, norms * 2], dim=1), "heldout": heldout is not None,
                "dtype": str(out.logits.dtype)}

    def scalars(self, result: dict) -> dict[str, float]:
        return {f"{self.name}/loss": result["loss"]}

    def heatmaps(self, result: dict) -> dict[str, list]:
        return {f"{self.name}_matrix": result["matrix"]}

    def step_columns(self, result: dict) -> dict[str, list]:
        return {f"{self.name}_norms": result["layer_norms"]}
