"""Kill a real training process with SIGKILL after a checkpoint, resume with ``--ckpt_path last``, compare.

The resumed run must continue exactly where the checkpoint left off: the same losses and learning rates
as an uninterrupted run, the same optimizer state at the end, and TensorBoard shows every step once
(events the killed run wrote after its last checkpoint are purged, none is skipped).
"""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
import yaml

from hltest import run_hierlatent, scalars, tiny_fit_config


class KillAtStep(L.Callback):
    """Test-only: SIGKILL this process at the end of optimizer step ``step`` (no cleanup of any kind)."""

    def __init__(self, step: int) -> None:
        """
        Args:
            step: global step after which the process kills itself.
        """
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            trainer.logger.experiment.flush()  # as a long run's writer would have: orphan events are on disk
            os.kill(os.getpid(), signal.SIGKILL)


def _run(root, cache, extra_cfg=None, args=(), check=True):
    cfg = tiny_fit_config(**(extra_cfg or {}))
    path = root / f"cfg{len(list(root.glob('cfg*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return run_hierlatent(["fit", "--config", str(path), *args], cwd=root, check=check,
                          env={"HIERLATENT_CACHE": str(cache)})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    full, killed = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("killed")
    _run(full, cache)
    kill = {"trainer": {"callbacks": [{"class_path": "test_resume.KillAtStep", "init_args": {"step": 10}}]}}
    out = _run(killed, cache, kill, check=False)
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    ckpts = killed / "runs" / "hierlatent" / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=4.ckpt", "step=8.ckpt"]
    before = scalars(killed / "runs" / "hierlatent" / "run")
    _run(killed, cache, args=["--ckpt_path", "last"])
    return full / "runs" / "hierlatent" / "run", killed / "runs" / "hierlatent" / "run", before


def test_killed_run_had_logged_past_the_checkpoint(runs):
    _, _, before = runs
    # step 8 (the 9th batch) comes after step=8.ckpt; step 9 is logged after the batch-end hook that killed it
    assert [s for s, _ in before["train/loss"]] == list(range(9))


def test_resumed_losses_equal_uninterrupted(runs):
    full, resumed, _ = runs
    a, b = scalars(full), scalars(resumed)
    for tag in ("train/loss", "train/lr", "train/tokens_seen", "val/loss"):
        steps_a, vals_a = zip(*a[tag])
        steps_b, vals_b = zip(*b[tag])
        assert steps_b == steps_a, tag  # each step once: nothing duplicated, nothing skipped
        assert torch.allclose(torch.tensor(vals_b), torch.tensor(vals_a), rtol=1e-5, atol=1e-6), tag
    assert [s for s, _ in b["train/loss"]] == list(range(12))


def test_optimizer_and_scheduler_state_restored(runs):
    full, resumed, _ = runs
    ca = torch.load(full / "checkpoints" / "step=12.ckpt", map_location="cpu", weights_only=True)
    cb = torch.load(resumed / "checkpoints" / "step=12.ckpt", map_location="cpu", weights_only=True)
    assert cb["global_step"] == ca["global_step"] == 12
    assert cb["hierlatent"]["tokens_seen"] == ca["hierlatent"]["tokens_seen"] == 12 * 4 * 16
    sa, sb = ca["optimizer_states"][0]["state"], cb["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert float(sb[k]["step"]) == float(sa[k]["step"]) == 12
        assert torch.allclose(sb[k]["exp_avg_sq"], sa[k]["exp_avg_sq"], rtol=1e-4, atol=1e-10)
    assert cb["lr_schedulers"][0]["last_epoch"] == ca["lr_schedulers"][0]["last_epoch"] == 12
    for k, v in ca["state_dict"].items():
        assert torch.allclose(cb["state_dict"][k], v, rtol=1e-4, atol=1e-6), k
