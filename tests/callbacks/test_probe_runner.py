"""ProbeRunner in a tiny Trainer.fit: schedule, JSON, scalars, images, state, start-up validation, DDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from hierlatent.callbacks.probes import ProbeRunner
from hierlatent.documents import extract_fragment, merge_fragment
from hierlatent.errors import ProbeError
from tests.callbacks.runner_helpers import TinyData, TinyLM
from tests.olmo.fake_probe import FakeProbe


def fit(tmp_path: Path, runner: ProbeRunner | None, devices: int = 1, strategy: str = "auto", max_steps: int = 6,
        vocab: int = 64, precision: str = "32-true"):
    seed_everything(0)
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)]
    callbacks += [runner] if runner is not None else []
    trainer = Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_steps=max_steps,
                      logger=TensorBoardLogger(tmp_path, name="logs"), callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False, precision=precision)
    module = TinyLM(vocab=vocab, n_layers=3 if vocab > 64 else 2)
    trainer.fit(module, datamodule=TinyData(vocab))
    return trainer, module


def test_fit_writes_json_logs_and_leaves_training_untouched(tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    runner = ProbeRunner([FakeProbe(trace_dir=str(trace)), FakeProbe(name="other", seed=3)], every_n_steps=3,
                         n_heldout=5)
    trainer, module = fit(tmp_path / "a", runner)
    log_dir = Path(trainer.log_dir)
    steps = sorted(int(p.stem.split("-")[1]) for p in (log_dir / "probes").glob("step-*.json"))
    assert steps == [2, 3, 4, 6]  # checkpoints 2,4,6 + every 3 steps; step 6 only once
    assert len(list(trace.iterdir())) == 4
    doc = json.loads((log_dir / "probes" / "step-4.json").read_text())
    assert doc["step"] == 4 and doc["tokens"] == 4 * 4 * 16
    assert doc["fake"]["heldout"] is True and len(doc["other"]["layer_norms"]) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("probes/fake/loss")] == [2, 3, 4, 6]
    assert "probes/images/fake_matrix" in acc.Tags()["images"]
    assert [e.step for e in acc.Images("probes/images/other_norms")] == [2, 3, 4, 6]
    # the checkpoint of step 6 already holds step 6's heatmap column (state refreshed in on_save_checkpoint)
    ckpt = torch.load(tmp_path / "a" / "ckpt" / "epoch=0-step=6.ckpt", weights_only=False)
    state = ckpt["callbacks"][runner.state_key]
    assert sorted(int(s) for s in state["columns"]["fake_norms"]) == [2, 3, 4, 6]
    restored = ProbeRunner([FakeProbe()])
    restored.load_state_dict(state)
    assert restored.columns == runner.columns and restored.last_step == 6
    # probing did not change training: same final weights as a run without the callback
    _, plain = fit(tmp_path / "b", None)
    for p, q in zip(module.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_bad_probe_argument_fails_before_first_step(tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    runner = ProbeRunner([FakeProbe(), FakeProbe(name="long", seq_len=1000, trace_dir=str(trace))])
    with pytest.raises(ProbeError, match=r"ProbeRunner.probes\[1\] \(FakeProbe\): seq_len=1000 exceeds the model context 64"):
        fit(tmp_path, runner)
    assert not list(tmp_path.rglob("step-*.json")) and not list(trace.iterdir())


def test_constructor_errors():
    with pytest.raises(ProbeError, match="ProbeRunner.probes"):
        ProbeRunner([])
    with pytest.raises(ProbeError, match="ProbeRunner.every_n_steps"):
        ProbeRunner([FakeProbe()], every_n_steps=0)



def test_probes_compose_by_name():
    """A later probe replaces an earlier one of its name, in the earlier's place (a preset after a config)."""
    first, other, later = FakeProbe(seed=0), FakeProbe(name="other"), FakeProbe(seed=5)
    runner = ProbeRunner([first, other, later])
    assert runner.probes == [later, other]


def test_fragment_nesting():
    doc: dict = {}
    merge_fragment(doc, "induction", {"standard": 0.5})
    merge_fragment(doc, "induction.icl", {"score": 1.0})
    assert doc == {"induction": {"standard": 0.5, "icl": {"score": 1.0}}}
    assert extract_fragment(doc, "induction.icl") == {"score": 1.0} and extract_fragment(doc, "hydra") is None


def test_ddp_two_processes_shards_probes_without_duplicates(tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    probes = [FakeProbe(name=f"p{i}", seed=s, trace_dir=str(trace)) for i, s in enumerate([0, 0, 2])]
    trainer, _ = fit(tmp_path / "ddp", ProbeRunner(probes), devices=2, strategy="ddp_spawn", max_steps=4)
    files = sorted((tmp_path / "ddp" / "logs" / "version_0" / "probes").glob("step-*.json"))
    assert [p.name for p in files] == ["step-2.json", "step-4.json"]
    doc = json.loads(files[0].read_text())
    assert all(f"p{i}" in doc for i in range(3))
    marks = [p.name.split("-") for p in trace.iterdir()]
    assert len(marks) == 2 * 3  # 2 probe steps x 3 probes, each run by exactly one rank
    assert len({pid for _, _, pid, _ in marks}) == 2  # both ranks did work
    # p0 (rank 0) and p1 (rank 1) have the same seed: a probe's result does not depend on the rank running it
    assert doc["p0"] == doc["p1"] != doc["p2"]


def test_real_probes_in_fit_under_bf16_autocast(tmp_path):
    """The real induction / ICL / Hydra probes inside Trainer.fit with bf16-mixed: float32 results, JSON nested."""
    from hierlatent.probes.hydra import HydraProbe
    from hierlatent.probes.icl import ICLProbe
    from hierlatent.probes.induction import InductionProbe

    probes = [InductionProbe(n=8, n_samples=2, ks=[1, 2]), ICLProbe(n_windows=4), HydraProbe(ks=[1], n_heldout=4),
              FakeProbe()]
    trainer, _ = fit(tmp_path, ProbeRunner(probes, n_heldout=4), vocab=320, max_steps=2, precision="bf16-mixed")
    doc = json.loads((Path(trainer.log_dir) / "probes" / "step-2.json").read_text())
    assert len(doc["induction"]["k_order"]) == 2 and isinstance(doc["induction"]["icl"]["score"], float)
    assert set(doc["hydra"]["paper"]["k1"]) == {"1", "2"}
    assert list(doc) == ["step", "tokens", "induction", "hydra", "fake", "probe_seconds"]
    assert doc["fake"]["dtype"] == "torch.float32"  # autocast is off inside the probes
