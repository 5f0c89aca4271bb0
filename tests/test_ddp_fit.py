"""DDP on CPU: 2 processes (gloo) x batch 2 train like 1 process x batch 4 (same global batches, same curve)."""

from __future__ import annotations


import torch
import yaml

from hltest import run_hierlatent, scalars, tiny_fit_config


def test_ddp_two_processes_match_one(tmp_path):
    cache = tmp_path / "cache"
    curves = {}
    for name, devices, batch in (("single", 1, 4), ("ddp", 2, 2)):
        root = tmp_path / name
        root.mkdir()
        cfg = tiny_fit_config(
            trainer={"devices": devices, "strategy": "ddp" if devices > 1 else "auto", "max_steps": 8,
                     "val_check_interval": 4},
            data={"batch_size": batch},
        )
        (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        run_hierlatent(["fit", "--config", str(root / "cfg.yaml")], cwd=root, env={"HIERLATENT_CACHE": str(cache)})
        curves[name] = scalars(root / "runs" / "hierlatent" / "run")
        # one HF export per checkpoint, written once (rank 0), complete
        assert sorted(p.name for p in (root / "runs" / "hierlatent" / "run" / "hf").iterdir()) == ["step-4", "step-8"]
    single, ddp = curves["single"], curves["ddp"]
    for tag in ("train/loss", "val/loss", "train/tokens_seen"):
        sa, va = zip(*single[tag])
        sb, vb = zip(*ddp[tag])
        assert sa == sb, tag
        assert torch.allclose(torch.tensor(vb), torch.tensor(va), rtol=1e-3, atol=1e-4), (tag, va, vb)
