"""Run by tests/test_data_ddp.py: a 2-process CPU DDP fit (gloo) that records which windows each rank saw.

Usage: ``python tests/_ddp_data_worker.py OUT_DIR NUM_WORKERS [CKPT_PATH]``. Lightning's DDP launcher re-runs
this script for rank 1. Each rank writes ``OUT_DIR/rank<r>.json`` with its per-step train window offsets
and its validation offsets; with a checkpoint every step under ``OUT_DIR/ckpt`` (when no CKPT_PATH).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# run as a script: Python puts this file's directory (tests/) first on sys.path, so _data_helpers imports
import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from _data_helpers import Recorder, attached_module

MAX_STEPS = 14  # 46 windows / (2 ranks × 2) = 11 steps per epoch: crosses an epoch boundary


def main() -> None:
    out, num_workers = Path(sys.argv[1]), int(sys.argv[2])
    ckpt_path = sys.argv[3] if len(sys.argv) > 3 else None
    dm = attached_module(context_window=64, batch_size=2, seed=2, num_workers=num_workers, val_windows=7)
    callbacks = [] if ckpt_path else [ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=1, save_top_k=-1)]
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=MAX_STEPS, logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, enable_checkpointing=not ckpt_path,
        default_root_dir=out, num_sanity_val_steps=0,
    )
    model = Recorder()
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    record = {"seen": model.seen, "val_seen": model.val_seen}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
    # tear gloo down before interpreter exit: its threads otherwise race the exit and abort the process
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
