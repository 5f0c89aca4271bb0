"""Every sweep file in configs/sweeps/ loads, and each of its conditions instantiates as the fit it will run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hierlatent.cli import HierlatentCLI
from hierlatent.sweep.loggers import check_loggers
from hierlatent.sweep.plan import hierlatent_command, plan_runs
from hierlatent.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
       "--trainer.precision", "32-true", "--trainer.logger", "false"]


def test_there_are_sweep_files():
    assert {"quickstart.yaml"} <= {p.name for p in SWEEPS}


@pytest.mark.parametrize("sweep", SWEEPS, ids=[p.name for p in SWEEPS])
def test_sweep_file_conditions_instantiate(sweep, tmp_cache, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = load_sweep(sweep)
    assert len(spec.conditions) >= 2 and len(spec.seeds) >= 5
    check_loggers(spec.conditions, spec.fit_args)  # every condition logs where the sweep can place its runs
    for run in plan_runs(spec, tmp_cache / "out")[: len(spec.conditions)]:  # one run per condition
        words = run.fit_args()[1:]
        i = words.index("--trainer.logger.init_args.save_dir=" + str(tmp_cache / "out"))
        args = words[:i] + CPU  # logger flags and --ckpt_path belong to the real run, not this check
        cli = HierlatentCLI(args=args, run=False)
        assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size
    assert not (tmp_cache / "corpora").exists()


def test_runs_start_hierlatent_as_a_dunder_main_module():
    """Fits run as ``python -m hierlatent``: a ``*.__main__`` main module, which spawned workers do not re-import."""
    import importlib.util

    cmd = hierlatent_command()
    assert cmd[1] == "-m" and importlib.util.find_spec(cmd[2]).submodule_search_locations  # a package ...
    assert importlib.util.find_spec(cmd[2] + ".__main__") is not None  # ... run through its __main__
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "fit" in out.stdout and "sweep" in out.stdout
