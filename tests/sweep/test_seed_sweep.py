"""``hierlatent sweep`` end to end through the console script: runs, manifest, skip/resume, kill -9, SLURM script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from hltest import TESTS_DIR, run_hierlatent
from sweep_helpers import write_tiny_sweep

from hierlatent.errors import ConfigError
from hierlatent.sweep.spec import load_sweep, parse_seeds


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The tiny sweep run once, uninterrupted (2 conditions x 2 seeds, 2 at a time)."""
    root = tmp_path_factory.mktemp("sweep")
    write_tiny_sweep(root)
    out = run_hierlatent(["sweep", "sweep.yaml", "--output_dir", "out"], cwd=root,
                         env={"HIERLATENT_CACHE": str(root / "cache")})
    return root, out


def _probe_docs(run_dir):
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "probe_seconds"}
            for p in sorted((run_dir / "probes").glob("step-*.json"))}


def test_sweep_runs_every_condition_and_seed(swept):
    root, out = swept
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    runs = {(r["condition"], r["seed"]): r for r in manifest["runs"]}
    assert set(runs) == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    for (cond, seed), rec in runs.items():
        run_dir = root / "out" / cond / f"seed-{seed}"
        assert rec["status"] == "finished" and rec["wall_seconds"] > 0
        assert rec["train_loss"] > 0 and rec["val_loss"] > 0
        assert f"--seed_everything={seed}" in rec["command"] and rec["command"].startswith("hierlatent fit")
        assert sorted(p.name for p in (run_dir / "probes").iterdir()) == ["step-0.json", "step-12.json", "step-6.json"]
        assert (run_dir / "hf" / "step-12").is_dir()
    assert "model.lr=0.01" in runs[("b", 0)]["command"]
    # seeds differ (init and data order), conditions differ (lr)
    assert runs[("a", 0)]["val_loss"] != runs[("a", 1)]["val_loss"] != runs[("b", 1)]["val_loss"]
    assert "[4/4]" in out.stdout and "ETA" in out.stdout


def test_rerun_skips_finished_runs(swept):
    root, _ = swept
    before = {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*.ckpt")}
    out = run_hierlatent(["sweep", "sweep.yaml", "--output_dir", "out"], cwd=root)
    assert "4 of 4 run(s) already finished: skipped" in out.stdout
    assert before == {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*.ckpt")}


def test_changed_sweep_into_finished_dir_is_refused(swept):
    root, _ = swept
    out = run_hierlatent(["sweep", "sweep.yaml", "--output_dir", "out", "--", "--trainer.max_steps", "6"],
                         cwd=root, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: --output_dir:") and "finished run of another command" in out.stderr


def _wait_for(predicate, timeout=240):
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.2)


def test_kill_9_mid_sweep_then_rerun_equals_uninterrupted(swept, tmp_path):
    root, _ = swept
    write_tiny_sweep(tmp_path)
    env = {**os.environ, "HIERLATENT_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(TESTS_DIR)}
    cmd = [sys.executable, "-m", "hierlatent", "sweep", "sweep.yaml", "--output_dir", "out", "--seeds", "0",
           "--parallel", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b_ckpt = tmp_path / "out" / "b" / "seed-0" / "checkpoints" / "step=6.ckpt"
    _wait_for(lambda: b_ckpt.is_file() or proc.poll() is not None)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(children, timeout=20)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], "orphan fits survived"
    a_status = json.loads((tmp_path / "out" / "a" / "seed-0" / "sweep-run.json").read_text())
    assert a_status["status"] == "finished"
    assert json.loads((tmp_path / "out" / "b" / "seed-0" / "sweep-run.json").read_text())["status"] == "running"
    a_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "a").rglob("*") if p.is_file()}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 of 2 run(s) already finished" in out.stdout
    assert a_files == {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "a").rglob("*") if p.is_file()}
    for cond in ("a", "b"):
        assert _probe_docs(tmp_path / "out" / cond / "seed-0") == _probe_docs(root / "out" / cond / "seed-0")
    manifest = {(r["condition"], r["seed"]): r for r in json.loads((tmp_path / "out" / "manifest.json").read_text())["runs"]}
    reference = {(r["condition"], r["seed"]): r for r in json.loads((root / "out" / "manifest.json").read_text())["runs"]}
    assert manifest[("b", 0)]["val_loss"] == reference[("b", 0)]["val_loss"]


def test_failed_run_is_recorded_and_the_others_go_on(tmp_path):
    write_tiny_sweep(tmp_path)
    (tmp_path / "sweep.yaml").write_text(
        "conditions:\n  good: [tiny.yaml]\n  bad: {configs: [tiny.yaml], overrides: {model.n_heads: 3}}\nseeds: [0]\n")
    out = run_hierlatent(["sweep", "sweep.yaml", "--output_dir", "out", "--parallel", "1"], cwd=tmp_path, check=False)
    assert out.returncode == 1
    runs = {r["condition"]: r for r in json.loads((tmp_path / "out" / "manifest.json").read_text())["runs"]}
    assert runs["good"]["status"] == "finished"
    assert runs["bad"]["status"] == "failed" and "n_heads" in runs["bad"]["error"]
    assert "FAILED bad/seed-0" in out.stdout


def test_dry_run_prints_commands_and_changes_nothing(tmp_path):
    write_tiny_sweep(tmp_path)
    out = run_hierlatent(["sweep", "sweep.yaml", "--output_dir", "out", "--dry_run", "--", "--trainer.max_steps", "3"],
                         cwd=tmp_path)
    fits = [line for line in out.stdout.splitlines() if line.startswith("hierlatent fit")]
    gens = [line for line in out.stdout.splitlines() if line.startswith("hierlatent generate")]
    assert len(fits) == 4 and all(line.endswith("--trainer.max_steps 3") for line in fits)
    assert len(gens) == 2  # one corpus build per distinct recipe, seeds do not change the corpus
    assert not (tmp_path / "out").exists()


def test_slurm_script_submits_and_runs_an_array_task(tmp_path):
    write_tiny_sweep(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/sbatch-args\necho 4242\n")
    fake.chmod(0o755)
    out = run_hierlatent(["sweep", "sweep.yaml", "--output_dir", "out", "--launcher", "slurm", "--seeds", "0"],
                         cwd=tmp_path, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                                            "HIERLATENT_CACHE": str(tmp_path / "cache")})
    assert "submitted array job 4242" in out.stdout
    script = (tmp_path / "out" / "slurm" / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --requeue" in script
    assert (tmp_path / "sbatch-args").read_text().split()[-1].endswith("sweep.sbatch")
    # run array task 1 as SLURM would (a real fit), twice: the second (a requeue) finds it finished
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "HIERLATENT_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    for _ in range(2):
        done = subprocess.run(["bash", str(tmp_path / "out" / "slurm" / "sweep.sbatch")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads((tmp_path / "out" / "b" / "seed-0" / "sweep-run.json").read_text())
    assert status["status"] == "finished" and status["val_loss"] > 0
    assert "already finished" in done.stdout


@pytest.mark.parametrize("text, message", [
    ("seeds: [0]\n", "conditions: expected a mapping"),
    ("conditions: {a: [tiny.yaml]}\n", "seeds: missing"),
    ("conditions: {a: [nope.yaml]}\nseeds: [0]\n", "config file nope.yaml does not exist"),
    ("conditions: {a: [tiny.yaml]}\nseeds: [0, 0]\n", "seeds repeat"),
    ("conditions: {a: [tiny.yaml]}\nseeds: {start: 0}\n", "start/stop"),
    ("conditions: {a: [tiny.yaml]}\nseeds: [0]\nparalel: 2\n", "unknown keys ['paralel']"),
    ("conditions: {'a/b': [tiny.yaml]}\nseeds: [0]\n", "condition names"),
    ("conditions: {a: {configs: [tiny.yaml], overides: {}}}\nseeds: [0]\n", "unknown keys ['overides']"),
    ("conditions: [a\n", "sweep.yaml:2: malformed YAML"),
])
def test_bad_sweep_files_name_the_field(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    write_tiny_sweep(tmp_path)
    (tmp_path / "sweep.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(tmp_path / "sweep.yaml")


def test_seed_syntax():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("3,1") == (3, 1)
    assert parse_seeds({"start": 2, "stop": 8, "step": 3}) == (2, 5)
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("a-b", "--seeds")


def test_cli_error_is_one_line(tmp_path):
    out = run_hierlatent(["sweep", "missing.yaml", "--output_dir", "out"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and out.stderr.strip() == "error: sweep file missing.yaml does not exist"
    out = run_hierlatent(["sweep", "missing.yaml", "--output_dir", "out", "--parallel", "x"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: --parallel: invalid value x")


WANDB, MLFLOW = "lightning.pytorch.loggers.WandbLogger", "lightning.pytorch.loggers.MLFlowLogger"


@pytest.mark.parametrize("where, expected", [
    ("config", "tiny.yaml: trainer.logger: " + WANDB),
    ("override", "conditions.b.overrides: trainer.logger: " + MLFLOW),
    ("fit_args", "fit_args: --trainer.logger: " + MLFLOW),
])
def test_a_logger_without_a_folder_per_run_is_refused_before_any_run(tmp_path, where, expected):
    """W&B files a run under <project>/<version> and MLflow has no name/version: every condition's seed-s run
    would share a folder, so the sweep refuses them (one error line, exit 2) and writes nothing."""
    write_tiny_sweep(tmp_path)
    tiny = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    args = ["sweep", "sweep.yaml", "--output_dir", "out"]
    if where == "config":
        tiny["trainer"]["logger"] = {"class_path": WANDB, "init_args": {"offline": True}}
        (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    elif where == "override":
        sweep = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
        sweep["conditions"]["b"]["overrides"]["trainer.logger"] = MLFLOW
        (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    else:
        args += ["--", f"--trainer.logger={MLFLOW}"]
    out = run_hierlatent(args, cwd=tmp_path, check=False)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: {expected} (condition ") and "TensorBoardLogger and CSVLogger" in out.stderr
    assert not (tmp_path / "out").exists()


def test_tensorboard_and_csv_loggers_pass_the_logger_check(tmp_path):
    from hierlatent.sweep.loggers import check_loggers

    write_tiny_sweep(tmp_path)
    tiny = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    tiny["trainer"]["logger"] = [{"class_path": "lightning.pytorch.loggers.CSVLogger"}, {"class_path": WANDB}]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))  # the first logger's folder holds the run
    spec = load_sweep(tmp_path / "sweep.yaml")
    check_loggers(spec.conditions, ("--trainer.max_steps", "3"))
    check_loggers(spec.conditions, ("--trainer.logger", "TensorBoardLogger"))
    with pytest.raises(ConfigError, match="fit_args: --trainer.logger: WandbLogger"):
        check_loggers(spec.conditions, ("--trainer.logger.class_path=WandbLogger",))
