"""2-process CPU DDP (gloo): ranks see disjoint windows whose union per step is the 1-process global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _data_helpers import TEST_BASE, attached_module, fit_recorder
from _ddp_data_worker import MAX_STEPS

WORKER = Path(__file__).with_name("_ddp_data_worker.py")


def _run_ddp(out: Path, num_workers: int = 0, ckpt: Path | None = None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(WORKER), str(out), str(num_workers)] + ([str(ckpt)] if ckpt else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def single_device_steps(tmp_path_factory) -> list[list[int]]:
    """The 1-process run with batch 2 × 2 = 4: the reference global batches."""
    dm = attached_module(context_window=64, batch_size=4, seed=2)
    return fit_recorder(tmp_path_factory.mktemp("single"), dm, max_steps=MAX_STEPS)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """One 2-process fit with a checkpoint every step: (its output dir, per-rank records)."""
    out = tmp_path_factory.mktemp("ddp")
    return out, _run_ddp(out)


def test_ddp_ranks_split_each_global_batch(ddp_run, single_device_steps):
    ranks = ddp_run[1]
    steps = [r["seen"] for r in ranks]
    assert len(steps[0]) == len(steps[1]) == len(single_device_steps)
    for step, global_batch in enumerate(single_device_steps):
        a, b = steps[0][step], steps[1][step]
        assert len(a) == len(b) == 2 and not set(a) & set(b)
        assert sorted(a + b) == sorted(global_batch), f"step {step}"
    # validation: 7 windows capped -> 6 (a multiple of 2 ranks), no window on both ranks
    val = [r["val_seen"] for r in ranks]
    assert len(val[0]) == len(val[1]) and not set(val[0]) & set(val[1])
    assert all(o >= TEST_BASE for o in val[0] + val[1])


@pytest.mark.slow  # a second 2-process launch (~25 s); the resume logic is covered by test_data.py in one process
def test_ddp_resume_mid_epoch(tmp_path, ddp_run, single_device_steps):
    ranks = _run_ddp(tmp_path, ckpt=ddp_run[0] / "ckpt" / "epoch=0-step=5.ckpt")
    resumed = [sorted(a + b) for a, b in zip(ranks[0]["seen"], ranks[1]["seen"])]
    assert resumed == [sorted(g) for g in single_device_steps[5:]]
