"""Resume faults: a real ``hierlatent fit`` process SIGKILLed where it matters, then ``--ckpt_path last``.

- killed before its first checkpoint: ``last`` starts the run afresh in the same directory and says so;
- killed while ``last.ckpt`` is rewritten: the old file is intact, the partial one lies beside it (never in
  ``$TMPDIR``); a damaged (0-byte) ``last.ckpt`` falls back to the newest intact checkpoint, naming both;
- killed during an HF export: the stale ``hf/.step-N.*.tmp`` is removed, the run resumes from the complete
  ``step=N.ckpt`` (newer than ``last.ckpt``), finishes the export, and writes no ``step=N-v1.ckpt``;
- TensorBoard: every tag has at most one value per step (``epoch``, ``reference/*`` after a resume).

The kills are injected inside the child process by test-only callbacks (``class_path`` from this module):
they SIGKILL the process itself at the chosen instant, so nothing is cleaned up, as after ``kill -9``.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from hltest import run_hierlatent, scalars, tiny_fit_config


def _die(trainer: L.Trainer | None = None) -> None:
    """SIGKILL this process (TensorBoard events flushed first, as a long run's writer would have)."""
    if trainer is not None and trainer.logger is not None:
        trainer.logger.experiment.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtTrainStart(L.Callback):
    """Test-only: SIGKILL at the start of training, after the run directory and its events exist."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _die(trainer)


class KillWritingLast(L.Callback):
    """Test-only: SIGKILL halfway through rewriting ``last.ckpt`` (its first write is left alone)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        real = torch.save

        def save(obj, f, *args, **kwargs):
            try:  # the file a torch.save into an open file object writes (an in-memory buffer has none)
                name = os.readlink(f"/proc/self/fd/{f.fileno()}") if hasattr(f, "fileno") else str(f)
            except (OSError, ValueError):  # io.UnsupportedOperation is both
                name = ""
            target = Path(name).parent / "last.ckpt"
            if "last.ckpt" in Path(name).name and Path(name).name != "last.ckpt" and target.exists():
                import io

                buffer = io.BytesIO()
                real(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                _die(trainer)
            return real(obj, f, *args, **kwargs)

        torch.save = save


class KillInExport(L.Callback):
    """Test-only: SIGKILL inside the HF export of ``step``, after the weights are in its temp directory."""

    def __init__(self, step: int) -> None:
        """
        Args:
            step: global step whose export is interrupted.
        """
        self.step = step

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import hierlatent.callbacks.checkpoint as ckpt_module

        real = ckpt_module.atomic_write_json

        def write(path, obj):
            if Path(path).parent.name.startswith(f".step-{self.step}."):
                _die(trainer)
            return real(path, obj)

        ckpt_module.atomic_write_json = write


def _fit(root: Path, cache: Path, callback: dict | None = None, args=(), env=None):
    cfg = tiny_fit_config(trainer={"callbacks": [callback]} if callback else {})
    path = root / f"cfg{len(list(root.glob('cfg*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return run_hierlatent(["fit", "--config", str(path), *args], cwd=root, check=False,
                          env={"HIERLATENT_CACHE": str(cache), **(env or {})})


#: the run directory, relative to the working directory of the fit (as its messages print it)
RUN = Path("runs") / "hierlatent" / "run"
pytestmark = pytest.mark.slow  # two real fits per test (~30 s each on a loaded CPU)


def _run_dir(root: Path) -> Path:
    return root / RUN


#: train/loss steps of a run killed inside a save at step 8 and resumed: Lightning writes the loss of the
#: batch that ends at step 8 (logged as step 7) after the checkpoint hooks, so the kill loses that one value
STEPS_KILLED_IN_SAVE = [s for s in range(12) if s != 7]


def _assert_one_value_per_step(run: Path) -> dict:
    series = scalars(run)
    for tag, points in series.items():
        steps = [s for s, _ in points]
        assert len(steps) == len(set(steps)), f"{tag} has several values at one step: {steps}"
    return series


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_killed_before_first_checkpoint_starts_afresh(tmp_path, cache):
    dead = _fit(tmp_path, cache, {"class_path": "test_faults_resume.KillAtTrainStart"})
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    run = _run_dir(tmp_path)
    assert list(run.glob("events.out.tfevents.*")) and not list(run.glob("checkpoints/*.ckpt"))
    out = _fit(tmp_path, cache, args=["--ckpt_path", "last"])
    assert out.returncode == 0, out.stderr[-3000:]
    notes = [line for line in out.stderr.splitlines() if "afresh" in line]
    assert len(notes) == 1 and str(RUN) in notes[0], out.stderr[-3000:]
    series = _assert_one_value_per_step(run)  # also: epoch once per validation step in a plain run
    assert [s for s, _ in series["train/loss"]] == list(range(12))
    assert [s for s, _ in series["reference/uniform"]] == [0, 4, 8, 12]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "step=12.ckpt", "step=4.ckpt",
                                                                         "step=8.ckpt"]


def test_killed_rewriting_last_ckpt_keeps_the_old_one(tmp_path, cache):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    dead = _fit(tmp_path, cache, {"class_path": "test_faults_resume.KillWritingLast"}, env={"TMPDIR": str(tmpdir)})
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    ckpts = _run_dir(tmp_path) / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4  # the step-8 rewrite was killed halfway: the step-4 file is untouched
    assert len(list(ckpts.glob(".last.ckpt.*.tmp"))) == 1  # the partial write lies beside it ...
    assert not [p for p in tmpdir.rglob("*") if p.is_file() and p.stat().st_size > 10_000]  # ... not in $TMPDIR
    out = _fit(tmp_path, cache, args=["--ckpt_path", "last"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert not list(ckpts.glob(".*.tmp"))  # the partial write is removed at start
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=12.ckpt", "step=4.ckpt", "step=8.ckpt"]


def test_damaged_last_ckpt_falls_back_to_newest_intact(tmp_path, cache):
    dead = _fit(tmp_path, cache, {"class_path": "test_resume.KillAtStep", "init_args": {"step": 10}})
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    ckpts = _run_dir(tmp_path) / "checkpoints"
    # what a non-atomic rewrite left (the fault reported): a 0-byte last.ckpt beside an intact step=8.ckpt
    (ckpts / "last.ckpt").write_bytes(b"")
    out = _fit(tmp_path, cache, args=["--ckpt_path", "last"])
    assert out.returncode == 0, out.stderr[-3000:]
    warning = [line for line in out.stderr.splitlines() if line.startswith("warning: damaged checkpoint")]
    assert len(warning) == 1 and str(ckpts / "last.ckpt") in warning[0] and str(ckpts / "step=8.ckpt") in warning[0]
    assert not list(ckpts.glob(".*.tmp"))
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=12.ckpt", "step=4.ckpt", "step=8.ckpt"]
    series = _assert_one_value_per_step(_run_dir(tmp_path))
    assert [s for s, _ in series["train/loss"]] == list(range(12))


def test_killed_during_hf_export_resumes_from_newest_complete_checkpoint(tmp_path, cache):
    dead = _fit(tmp_path, cache, {"class_path": "test_faults_resume.KillInExport", "init_args": {"step": 8}})
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    run = _run_dir(tmp_path)
    ckpts, hf = run / "checkpoints", run / "hf"
    assert len(list(hf.glob(".step-8.*.tmp"))) == 1 and not (hf / "step-8").exists()
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 4
    # the same debris resumed explicitly from the older last.ckpt: step 8 is re-run and overwrites step=8.ckpt
    other = tmp_path / "explicit"
    shutil.copytree(tmp_path / "runs", other / "runs")
    out = _fit(other, cache, args=["--ckpt_path", str(RUN / "checkpoints" / "last.ckpt")])
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (other / RUN / "checkpoints").iterdir()) == [
        "last.ckpt", "step=12.ckpt", "step=4.ckpt", "step=8.ckpt"]  # no step=8-v1.ckpt
    assert not list((other / RUN / "hf").glob(".*"))
    out = _fit(tmp_path, cache, args=["--ckpt_path", "last"])
    assert out.returncode == 0, out.stderr[-3000:]
    said = [line for line in out.stderr.splitlines() if line.startswith("resuming from")]
    assert said == [f"resuming from {ckpts / 'step=8.ckpt'} (step 8), newer than {ckpts / 'last.ckpt'} (step 4)"], said
    assert not list(hf.glob(".*"))  # the stale temp export is gone
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=12.ckpt", "step=4.ckpt", "step=8.ckpt"]
    assert sorted(p.name for p in hf.iterdir()) == ["step-12", "step-4", "step-8"]
    # the export the kill interrupted is finished on resume, with the weights of step=8.ckpt
    from safetensors.torch import load_file

    exported = load_file(hf / "step-8" / "model.safetensors")
    state = torch.load(ckpts / "step=8.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in exported.items():
        assert torch.equal(tensor, state[f"model.{name}"]), name
    series = _assert_one_value_per_step(run)  # reference/* once at step 0 although the resume restarts the fit
    # (no value at 8: the kill came before step 8's validation, which Lightning does not re-run on resume)
    assert [s for s, _ in series["reference/uniform"]] == [0, 4, 12]
    assert [s for s, _ in series["train/loss"]] == STEPS_KILLED_IN_SAVE
