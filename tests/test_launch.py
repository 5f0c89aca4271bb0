"""Launch scripts: valid bash, and ``DRY_RUN=1`` prints the command they would run (and exits 0)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = ["slurm_fit.sbatch", "torchrun_fit.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)


def _dry(script, **env):
    full = {**os.environ, "DRY_RUN": "1", **env}
    out = subprocess.run(["bash", str(LAUNCH / script)], env=full, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_slurm_dry_run():
    out = _dry("slurm_fit.sbatch", CONFIG="configs/ngram.yaml", NODES="2", GPUS_PER_NODE="4", STRATEGY="fsdp",
               EXTRA_CONFIGS="callbacks/paper.yaml")
    line = out.strip().splitlines()[-1]
    assert line.startswith("srun hierlatent fit --config configs/ngram.yaml --config callbacks/paper.yaml")
    for part in ("--trainer.num_nodes 2", "--trainer.devices 4", "--trainer.strategy fsdp", "--ckpt_path last"):
        assert part in line
    text = (LAUNCH / "slurm_fit.sbatch").read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text


def test_torchrun_dry_run():
    out = _dry("torchrun_fit.sh", GPUS="2", CONFIG="configs/pcfg.yaml")
    generate, fit = (line.strip() for line in out.strip().splitlines()[-2:])
    assert generate == "hierlatent generate --config configs/pcfg.yaml"
    assert fit.startswith("torchrun --standalone --nnodes 1 --nproc_per_node 2")
    assert "--module hierlatent fit --config configs/pcfg.yaml" in fit and "--ckpt_path last" in fit
