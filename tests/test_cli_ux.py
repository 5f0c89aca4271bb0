"""What the ``hierlatent`` command tells its user: front-door help, where a fit run went, progress, no noise.

One real ``hierlatent fit`` through the console script (a 2-layer model, 24 steps, stdout/stderr not a
terminal) checks the start lines, the end summary, the periodic progress lines, that Lightning's noise
is gone, and that validation happens at the checkpoint steps with ``val/loss`` logged at those steps.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from hltest import run_hierlatent, scalars, tiny_fit_config


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; its stdout ends with NO-TORCH when it never imported torch."""
    probe = "\nimport sys\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    return subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_subcommand_without_torch():
    out = _fresh_python(
        "from hierlatent.commands import LIGHT_SUBCOMMANDS, SUBCOMMAND_HELP, light_main;"
        " assert light_main(['--help']) == 0; assert set(LIGHT_SUBCOMMANDS) <= set(SUBCOMMAND_HELP)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO-TORCH")
    for sub in ("fit", "validate", "test", "predict", "generate", "probe-olmo", "plot", "sweep", "compare", "verify"):
        assert f"\n  {sub} " in out.stdout
    assert "hierlatent: train small transformers" in out.stdout


def test_every_subcommand_is_a_light_main_or_a_trainer_method():
    import importlib
    import inspect

    from hierlatent.cli import HierlatentCLI
    from hierlatent.commands import LIGHT_SUBCOMMANDS, SUBCOMMAND_HELP
    from hierlatent.trainer import HierlatentTrainer

    trainer_subcommands = set(HierlatentCLI.subcommands())
    assert trainer_subcommands.isdisjoint(LIGHT_SUBCOMMANDS)
    assert trainer_subcommands | set(LIGHT_SUBCOMMANDS) == set(SUBCOMMAND_HELP)  # each has a help line, one kind
    for name in trainer_subcommands:
        assert callable(getattr(HierlatentTrainer, name.replace("-", "_"), None)), name
    for name, module in LIGHT_SUBCOMMANDS.items():
        assert list(inspect.signature(importlib.import_module(module).main).parameters) == ["argv"], name


def test_plot_error_needs_no_torch():
    out = _fresh_python(
        "from hierlatent.commands import main\n"
        "try:\n main(['plot', '--runs', '/nonexistent'])\nexcept SystemExit as e:\n print('EXIT', e.code)"
    )
    assert "EXIT 2" in out.stdout and out.stdout.strip().endswith("NO-TORCH"), out.stdout + out.stderr
    assert out.stderr.strip().startswith("error: --runs")


def test_plot_help_shows_space_separated_lists():
    out = run_hierlatent(["plot", "--help"], cwd=".")
    assert "--runs PATH [PATH ...]" in out.stdout and '["PATH1",...]' not in out.stdout


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """One 24-step fit, validation and checkpoints every quarter, progress bar on, model summary on."""
    root = tmp_path_factory.mktemp("ux")
    cfg = tiny_fit_config(
        trainer={"max_epochs": 1, "limit_train_batches": 24, "val_check_interval": 0.25, "log_every_n_steps": 2,
                 "enable_progress_bar": True, "enable_model_summary": True},
        checkpoint={"every_fraction": 0.25},
    )
    cfg["trainer"].pop("max_steps")
    cfg["checkpoint"].pop("every_n_train_steps")
    (root / "ux.yaml").write_text(yaml.safe_dump(cfg))
    env_cache = root / "cache"
    out = run_hierlatent(["fit", "--config", "ux.yaml"], cwd=root, env={"HIERLATENT_CACHE": str(env_cache)})
    return root, out


def test_fit_says_where_things_are(fit_run):
    root, out = fit_run
    lines = out.stdout.splitlines()
    assert lines[0] == "run directory: runs/hierlatent/run"
    assert lines[1].startswith("corpus: ") and "(not in the cache: generating it now)" in lines[1]
    assert "done: 24 steps, 1,536 training tokens" in out.stdout
    assert "final loss (nats/token): train " in out.stdout and "reference losses: uniform 4.1109" in out.stdout
    assert "HF exports: 4 in runs/hierlatent/run/hf (last: step-24)" in out.stdout
    assert "tensorboard --logdir runs/hierlatent" in out.stdout
    assert "hierlatent plot --runs runs/hierlatent/run" in out.stdout


def test_fit_log_has_progress_lines_and_no_noise(fit_run):
    _, out = fit_run
    assert "step 6/24 (25%)" in out.stderr and "ETA" in out.stderr
    assert "validation at step 12: val/loss" in out.stderr
    assert "\r" not in out.stderr.split("estimate number of stepping batches")[-1]  # no tqdm bar in a log
    for noise in ("litlogger", "LeafSpec", "Total Flops", "Skipping setting a default"):
        assert noise not in out.stderr + out.stdout
    assert "Training FLOPs per token" in out.stderr


def test_validation_shares_the_checkpoint_steps(fit_run):
    root, _ = fit_run
    run = root / "runs" / "hierlatent" / "run"
    ckpt_steps = sorted(int(p.stem.split("=")[1]) for p in (run / "checkpoints").glob("step=*.ckpt"))
    val_steps = [step for step, _ in scalars(run)["val/loss"]]
    assert ckpt_steps == [6, 12, 18, 24]
    assert val_steps == ckpt_steps
