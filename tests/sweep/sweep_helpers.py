"""A tiny real sweep for the sweep and compare tests: 2 conditions x 2 seeds of a seconds-long fit with a probe."""

from __future__ import annotations

from pathlib import Path

import yaml

from hltest import tiny_fit_config


def write_tiny_sweep(root: Path, paired: bool = False) -> Path:
    """Write tiny.yaml (12 steps, checkpoints at 6 and 12, an induction probe) and sweep.yaml into ``root``."""
    cfg = tiny_fit_config(checkpoint={"every_n_train_steps": 6})
    cfg["trainer"]["callbacks"] = [{
        "class_path": "hierlatent.callbacks.probes.ProbeRunner",
        "init_args": {"on_checkpoint": True, "on_train_start": True, "probes": [
            {"class_path": "hierlatent.probes.induction.InductionProbe",
             "init_args": {"n": 6, "n_samples": 2, "ks": [1, 2], "token_low": 0, "token_high": 60}}]},
    }]
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    sweep = {"conditions": {"a": ["tiny.yaml"], "b": {"configs": ["tiny.yaml"], "overrides": {"model.lr": 1.0e-2}}},
             "seeds": [0, 1], "parallel": 2, "paired": paired}
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path
