"""The ``hierlatent`` CLI: help from docstrings, --print_config, composed configs, and bad input -> exit 2, one line.

Most cases call ``hierlatent.cli.main`` in-process (seconds instead of a fresh interpreter each); one test
goes through the installed console script.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hierlatent.cli import main

TESTS = Path(__file__).parent

BASE = {
    "trainer": {"max_steps": 4, "accelerator": "cpu", "enable_progress_bar": False},
    "model": {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 64, "context_window": 16},
    "data": {"generator": {"class_path": "hltest.RandomTokens", "init_args": {"seed": 1}}, "batch_size": 4},
}


@pytest.fixture
def cfg(tmp_path, tmp_cache, monkeypatch):
    """A tiny fit config (RandomTokens corpus) in a temp working directory."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return path


def run_main(args, capsys):
    """``main(args)`` -> (exit status, stdout, stderr)."""
    argv, sys.argv = sys.argv, ["hierlatent"]  # as if started from the console script
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_shows_docstrings(capsys):
    code, out, _ = run_main(["fit", "--help"], capsys)
    assert code == 0
    assert "residual stream width (paper: 256)" in out  # LanguageModel docstring
    assert "save every fraction of the planned optimizer steps" in out  # HFCheckpoint docstring
    assert "--ckpt_path" in out and "--data.generator" in out


def test_top_level_help_lists_subcommands(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for sub in ("fit", "validate", "test", "predict", "generate", "probe-olmo"):
        assert sub in out


def test_print_config(cfg, capsys):
    code, out, _ = run_main(["fit", "--config", str(cfg), "--print_config"], capsys)
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["model"]["d_model"] == 32 and "context_window" not in printed["data"]  # a link target
    assert printed["seed_everything"] == 0  # fixed default, never random
    assert printed["checkpoint"]["save_last"] is True
    assert printed["trainer"]["logger"]["class_path"] == "hierlatent.trainer.ResumableTensorBoardLogger"


def test_two_configs_compose(cfg, tmp_path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({
        "model": {"n_layers": 3},
        "checkpoint": {"every_fraction": 0.25},
        "trainer": {"callbacks": [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]},
    }))
    code, out, _ = run_main(["fit", "--config", str(cfg), "--config", str(extra), "--print_config"], capsys)
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["model"]["n_layers"] == 3 and printed["model"]["d_model"] == 32
    assert printed["checkpoint"]["every_fraction"] == 0.25
    assert printed["trainer"]["callbacks"][0]["class_path"].endswith("LearningRateMonitor")


def test_probe_olmo_needs_no_model_or_data(capsys):
    code, out, _ = run_main(["probe-olmo", "--help"], capsys)
    assert code == 0
    assert "--model." not in out and "--data." not in out and "--trainer.callbacks" in out
    from hierlatent.olmo.sweep import probe_olmo
    from hierlatent.trainer import HierlatentTrainer

    assert HierlatentTrainer.probe_olmo is probe_olmo  # bound unconditionally: its signature is the CLI
    for name in list(inspect.signature(probe_olmo).parameters)[1:]:
        assert f"--{name} " in out, name


def test_plot_dispatch(capsys):
    code, out, err = run_main(["plot", "--help"], capsys)
    assert code == 0 and "usage" in (out + err).lower()


def _other_checkpoint(tmp_path):
    from hierlatent.module import LanguageModel

    model = LanguageModel(vocab_size=64, n_layers=2, d_model=64, n_heads=4, d_mlp=64, context_window=16)
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


BAD = [
    (["--model.d_model", "30"], "--model.d_model"),
    (["--model.n_heads", "3"], "--model.d_model"),
    (["--model.architecture", "mamba"], "model.architecture"),
    (["--model.context_window", "8192"], "--model.context_window"),
    (["--model.no_such_key", "1"], "no_such_key"),
    (["--checkpoint.every_fraction", "2.0"], "--checkpoint.every_fraction"),
    (["--ckpt_path", "missing.ckpt"], "--ckpt_path"),
    (["--ckpt_path", "OTHER"], "--ckpt_path"),
]


@pytest.mark.parametrize("extra, flag", BAD, ids=[b[1] + ":" + b[0][1] for b in BAD])
def test_bad_input_one_line_exit_2_no_corpus(cfg, tmp_path, tmp_cache, capsys, extra, flag):
    extra = [str(_other_checkpoint(tmp_path)) if a == "OTHER" else a for a in extra]
    code, _, err = run_main(["fit", "--config", str(cfg), *extra], capsys)
    assert code == 2
    assert flag in err
    if "no_such_key" not in extra[0] and "architecture" not in extra[0]:  # jsonargparse prints its own usage
        assert err.strip().count("\n") == 0 and err.startswith("error: "), err
    assert not (tmp_cache / "corpora").exists()  # failed before any generation
    assert not (tmp_path / "runs").exists()


def test_console_script_fit_help():
    out = subprocess.run(["hierlatent", "fit", "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "--model.d_model" in out.stdout
