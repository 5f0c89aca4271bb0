"""probe-olmo sweep on tiny local checkpoints: outputs, duplicates, failure isolation, resume, 1 vs 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.cli import main
from hierlatent.errors import ConfigError, HierlatentError
from hierlatent.olmo.sweep import probe_olmo
from tests.olmo.fake_probe import FakeProbe
from tests.olmo.olmo_helpers import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def make_trainer(trace_dir: Path | None = None, log_images: bool = True) -> Trainer:
    probes = [FakeProbe(trace_dir=str(trace_dir) if trace_dir else None), FakeProbe(name="other", seed=1)]
    return Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   callbacks=[ProbeRunner(probes, log_images=log_images)])


def results(out: Path) -> dict[str, dict]:
    docs = {}
    for p in sorted(out.glob("*/probes.json")):
        doc = json.loads(p.read_text())
        doc.pop("probe_seconds")
        docs[p.parent.name] = doc
    return docs


def test_sweep_outputs(tmp_path, olmo_series, capsys):
    out = tmp_path / "out"
    manifest = probe_olmo(make_trainer(), str(olmo_series), out)
    progress = [line for line in capsys.readouterr().err.splitlines() if "revisions (" in line]
    assert [line.split(": ")[2].split(" ")[0] for line in progress] == ["1/4", "2/4", "3/4", "4/4"]
    assert progress[-1].endswith("ETA 0 s")
    docs = results(out)
    assert sorted(docs) == sorted(p.name for p in olmo_series.iterdir())
    doc = docs["step1000-tokens4B"]
    assert doc["step"] == 1000 and doc["tokens"] == 4 * 10**9 and doc["revision"] == "step1000-tokens4B"
    assert len(doc["fake"]["layer_norms"]) == 2 and isinstance(doc["fake"]["loss"], float)
    assert doc["fake"] != docs["step2000-tokens8B"]["fake"]  # different weights, different results
    assert manifest["summary"] == {"done": 4, "failed": 0, "duplicate": 0}
    entry = manifest["revisions"][0]
    assert entry["status"] == "done" and len(entry["weights_sha256"]) == 64 and entry["seconds_load"] > 0
    assert json.loads((out / "manifest.json").read_text()) == manifest
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("probes/fake/loss")] == [0, 1000, 2000, 3000]
    assert [e.step for e in acc.Images("probes/images/fake_norms")] == [0, 1000, 2000, 3000]


def test_needs_a_probe_runner(tmp_path, olmo_series):
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match="ProbeRunner"):
        probe_olmo(trainer, str(olmo_series), tmp_path)


def test_duplicates_failures_and_resume(tmp_path, olmo_series):
    src = tmp_path / "src"
    shutil.copytree(olmo_series, src)
    shutil.copytree(src / "step1000-tokens4B", src / "step1500-tokens6B")  # byte-identical weights
    make_checkpoint(src / "step4000-tokens16B", seed=9)
    (src / "step4000-tokens16B" / "model.safetensors").write_bytes(b"\x00garbage" * 10)  # corrupt
    make_checkpoint(src / "step5000-tokens20B", seed=10)
    (src / "step5000-tokens20B" / "config.json").unlink()  # missing config
    out, trace = tmp_path / "out", tmp_path / "trace"
    trace.mkdir()
    with pytest.raises(HierlatentError, match=r"^2 of 7 checkpoints failed: step4000-tokens16B"):
        probe_olmo(make_trainer(trace), str(src), out)
    manifest = json.loads((out / "manifest.json").read_text())
    by_rev = {e["revision"]: e for e in manifest["revisions"]}
    assert manifest["summary"] == {"done": 4, "failed": 2, "duplicate": 1}
    assert by_rev["step1500-tokens6B"]["duplicate_of"] == "step1000-tokens4B"
    assert by_rev["step1500-tokens6B"]["weights_sha256"] == by_rev["step1000-tokens4B"]["weights_sha256"]
    assert not (out / "step1500-tokens6B").exists()
    assert "config.json" in by_rev["step5000-tokens20B"]["error"]
    assert by_rev["step4000-tokens16B"]["error"]
    assert len(list(trace.iterdir())) == 4  # fake probe ran once per probed revision
    first = results(out)
    # resume: repair one failure, rerun; completed revisions are skipped
    make_checkpoint(src / "step5000-tokens20B", seed=10)
    with pytest.raises(HierlatentError, match=r"^1 of 7 checkpoints failed"):
        probe_olmo(make_trainer(trace), str(src), out)
    assert len(list(trace.iterdir())) == 5
    again = results(out)
    assert {k: again[k] for k in first} == first and "step5000-tokens20B" in again
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"] == {"done": 5, "failed": 1, "duplicate": 1}


def test_incomplete_json_is_redone(tmp_path, olmo_series):
    out, trace = tmp_path / "out", tmp_path / "trace"
    trace.mkdir()
    probe_olmo(make_trainer(trace), str(olmo_series), out, revisions="step0-tokens0B,step1000-tokens4B")
    (out / "step0-tokens0B" / "probes.json").write_text('{"step": 0, "fake": {}}')  # "other" missing
    probe_olmo(make_trainer(trace), str(olmo_series), out, revisions="step0-tokens0B,step1000-tokens4B")
    assert len(list(trace.iterdir())) == 3
    assert "other" in json.loads((out / "step0-tokens0B" / "probes.json").read_text())


def test_cli_two_processes_equal_one(tmp_path, olmo_series):
    """``hierlatent probe-olmo`` under 2-process gloo DDP gives the same files as one in-process run."""
    one, two, trace = tmp_path / "one", tmp_path / "two", tmp_path / "trace"
    trace.mkdir()
    probe_olmo(make_trainer(), str(olmo_series), one)
    config = tmp_path / "probes.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: hierlatent.callbacks.probes.ProbeRunner\n      init_args:\n"
        "        probes:\n"
        f"          - {{class_path: tests.olmo.fake_probe.FakeProbe, init_args: {{trace_dir: '{trace}'}}}}\n"
        "          - {class_path: tests.olmo.fake_probe.FakeProbe, init_args: {name: other, seed: 1}}\n")
    # the workers run from tmp_path: the repo root makes ``tests.olmo.fake_probe`` importable there too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = ["hierlatent", "probe-olmo", "--config", str(config), "--checkpoints", str(olmo_series),
           "--output_dir", str(two), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--trainer.logger", "false"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results(one) == results(two)
    manifest = json.loads((two / "manifest.json").read_text())
    assert sorted(e["rank"] for e in manifest["revisions"]) == [0, 0, 1, 1]  # checkpoint-level split
    assert len(list(trace.iterdir())) == 4  # each revision probed exactly once


def test_cli_failure_exits_nonzero_with_summary(tmp_path, olmo_series, capsys):
    src = tmp_path / "src"
    shutil.copytree(olmo_series / "step0-tokens0B", src / "step0-tokens0B")
    (src / "step7").mkdir()  # a step-named directory without config or weights
    config = tmp_path / "probes.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: hierlatent.callbacks.probes.ProbeRunner\n"
                      "      init_args:\n        probes: [{class_path: tests.olmo.fake_probe.FakeProbe}]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["probe-olmo", "--config", str(config), "--checkpoints", str(src), "--output_dir", str(tmp_path / "out"),
              "--trainer.accelerator", "cpu", "--trainer.logger", "false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "probe-olmo: step7: failed: CheckpointError" in err
    assert "error: 1 of 2 checkpoints failed: step7: CheckpointError" in err
    assert (tmp_path / "out" / "step0-tokens0B" / "probes.json").is_file()


def test_memory_flat_over_50_checkpoints(tmp_path):
    """RSS after 10 warm-up revisions vs after 50: one model at a time, freed before the next."""
    psutil = pytest.importorskip("psutil")
    src = tmp_path / "src"
    # ~4 MB of weights each, so that keeping every model alive would add ~160 MB
    base = make_checkpoint(src / "step0", seed=0, hidden_size=128, intermediate_size=512, vocab_size=1024)
    for i in range(1, 50):  # distinct weights without building 50 models: perturb the saved tensors
        from safetensors.torch import load_file, save_file

        d = src / f"step{i * 10}"
        shutil.copytree(base, d)
        tensors = load_file(d / "model.safetensors")
        save_file({k: v + i * 1e-3 for k, v in tensors.items()}, d / "model.safetensors", metadata={"format": "pt"})
    proc = psutil.Process()
    probe_olmo(make_trainer(log_images=False), str(src), tmp_path / "out", revisions="steps:0-90")
    warm = proc.memory_info().rss
    t0 = time.perf_counter()
    manifest = probe_olmo(make_trainer(log_images=False), str(src), tmp_path / "out")
    print(f"40 checkpoints in {time.perf_counter() - t0:.1f} s, RSS +{(proc.memory_info().rss - warm) / 2**20:.1f} MiB")
    grown = proc.memory_info().rss - warm
    assert manifest["summary"]["done"] == 50
    assert grown < 40 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 40 more checkpoints"
