"""Faults through the real ``hierlatent`` console script (issue 11): a GPU config on a CPU machine, ``verify``,
a SIGKILLed ``generate`` with workers, and unsafe revision names in a hub listing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from _faults_helpers import kill_when_busy_and_check
from hierlatent.corpora import store
from hierlatent.errors import CheckpointError
from hierlatent.olmo import checkpoints as ck
from hltest import RandomTokens, run_hierlatent, tiny_fit_config

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without a GPU does")
GPU_TRAINER = {"accelerator": "gpu", "devices": 8, "strategy": "ddp", "precision": "bf16-mixed"}


def _config(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_fit_config(**overrides)))
    return path


@no_gpu
def test_generate_with_a_gpu_config_on_a_cpu_machine(tmp_path, tmp_cache):
    """``generate --config configs/pcfg.yaml`` on a login node died in Lightning's accelerator lookup."""
    out = run_hierlatent(["generate", "--config", str(_config(tmp_path, trainer=GPU_TRAINER))], cwd=tmp_path)
    assert "corpus:" in out.stdout
    assert (store.corpus_dir(RandomTokens(seed=1)) / "meta.json").is_file()


@no_gpu
def test_fit_with_a_gpu_config_on_a_cpu_machine_is_one_line(tmp_path, tmp_cache):
    out = run_hierlatent(["fit", "--config", str(_config(tmp_path, trainer=GPU_TRAINER))], cwd=tmp_path, check=False)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in out.stderr and len(errors) == 1 and "--trainer.accelerator" in errors[0] and "no GPU" in errors[0]
    assert "--trainer.accelerator cpu --trainer.devices 1" in errors[0]
    assert not tmp_cache.exists() or not list(tmp_cache.rglob("meta.json"))  # refused before any corpus work


def test_verify_command_exit_statuses(tmp_path, tmp_cache):
    root = store.build_corpus(RandomTokens(seed=3), workers=1, progress=False).path
    ok = run_hierlatent(["verify", str(root)], cwd=tmp_path)
    assert ok.stdout.startswith("ok: ") and "checksums match" in ok.stdout
    shard = root / "train" / "shard-00000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:100] + bytes([data[100] ^ 4]) + data[101:])
    bad = run_hierlatent(["verify", str(root)], cwd=tmp_path, check=False)
    recorded = json.loads((root / "meta.json").read_text())["shard_crc32"]["train"][0]
    (line,) = bad.stdout.splitlines()
    assert bad.returncode == 1 and line.startswith(f"{shard}: checksum crc32 ") and line.endswith(f"expected {recorded}")
    (root / "meta.json").write_bytes(os.urandom(64) + b"\xff")
    corrupt = run_hierlatent(["verify", str(root)], cwd=tmp_path, check=False)
    assert corrupt.returncode == 2 and corrupt.stderr.count("\n") == 1
    assert corrupt.stderr.startswith(f"error: {root / 'meta.json'}: malformed corpus metadata: not UTF-8")


@pytest.mark.slow
def test_killed_generate_leaves_no_orphan_workers(tmp_path, tmp_cache):
    """The issue's case: ``kill -9`` of ``hierlatent generate --data.generation_workers 2`` left both workers and
    the resource tracker running (parent pid 1), writing shards."""
    cfg = _config(tmp_path, data={"generator": {"class_path": "_faults_helpers.SlowShards"}, "batch_size": 4,
                                  "generation_workers": 2})
    kill_when_busy_and_check(["hierlatent", "generate", "--config", str(cfg)], tmp_path, "both workers to start a shard")


# -- revision names from a hub listing ------------------------------------------------------------
@pytest.mark.parametrize("name, reason", [
    ("../../x", "contains '/' and contains '..'"),
    ("/etc/x", "starts with '/' and contains '/'"),
    ("/x", "starts with '/'"),
    ("a\\b", "contains '\\'"),
    ("..", "contains '..'"),
    ("a/b", "contains '/'"),
])
def test_unsafe_revision_names(name, reason):
    assert ck.revision_name_problem(name) == reason


def test_hub_listing_with_unsafe_names_is_filtered_and_said(monkeypatch, capsys):
    import huggingface_hub

    names = ["step1000", "../../x", "/abs/step5", "step2000", "a\\step3"]
    branches = [SimpleNamespace(name=n, target_commit=f"{i:040d}") for i, n in enumerate(names)]
    monkeypatch.setattr(huggingface_hub, "list_repo_refs", lambda repo: SimpleNamespace(branches=branches))
    refs = ck.discover("org/model")
    assert [r.revision for r in refs] == ["step1000", "step2000"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all("skipping revision" in line and "org/model" in line for line in err)
    assert "'../../x'" in err[0] and "'/abs/step5'" in err[1] and "starts with '/'" in err[1]


def test_local_checkpoint_named_dot_is_refused(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"revision name '' .*is empty"):
        ck.discover(".")
