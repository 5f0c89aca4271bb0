"""Probe scalars and heatmap images through the real W&B (offline) and MLflow (file store) loggers, read back from disk.

Marker ``loggers``: deselected by default (pyproject addopts); ``.ci/loggers`` installs the ``loggers`` extra and runs
``pytest -m loggers``. The packages are looked for inside the fixtures, so a default run neither runs nor counts these.
What each package wrote is read from its own files: the W&B offline run's ``.wandb`` record log (wandb's protobuf
``Record``; wandb >= 0.2x has no Python reader for the file any more) and ``files/media/images``, and the MLflow file
store's ``metrics/`` and ``artifacts/``. Every image is compared pixel for pixel with the PNG the CSV logger wrote
from the same call.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger

from hierlatent.callbacks.suite import ProbeSuite
from hltest import run_hierlatent, tiny_fit_config
from tests.callbacks.runner_helpers import TinyLM
from tests.olmo.fake_probe import FakeProbe

pytestmark = pytest.mark.loggers

STEPS = (2, 4)
IMAGES = ("fake_matrix", "fake_norms")
INDUCTION = {"class_path": "hierlatent.probes.induction.InductionProbe",
             "init_args": {"n": 6, "n_samples": 2, "ks": [1, 2], "role": "content"}}


@pytest.fixture
def wandb_env(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """wandb importable, offline, silent, its config/cache/data under tmp_path (no network, nothing in ~).

    wandb's service process is stopped afterwards, and the ``WANDB_SERVICE`` variable naming it is removed
    (monkeypatch's undo): a ``hierlatent`` child that inherited it would log through this process's service,
    which finishes the child's run only when this process ends.
    """
    wandb = pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
           "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    yield env
    wandb.teardown()


@pytest.fixture
def mlflow_env(monkeypatch) -> dict[str, str]:
    """mlflow importable, its file store allowed (mlflow >= 3.7 refuses ``file:`` stores without this)."""
    pytest.importorskip("mlflow")
    env = {"MLFLOW_ALLOW_FILE_STORE": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return TinyLM().model.eval()


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _log_fake_probe(model, loggers) -> dict[int, float]:
    """Log FakeProbe's documents at STEPS through ``loggers``; return step -> the scalar ``probes/fake/loss``."""
    suite = ProbeSuite([FakeProbe()])
    losses = {}
    for step in STEPS:
        doc = suite.run(model, step=step)
        suite.log(doc, loggers)
        losses[step] = doc["fake"]["loss"]
    return losses


def _csv_png(csv_logger: CSVLogger, name: str, step: int) -> np.ndarray:
    return _rgb(Path(csv_logger.log_dir) / "images" / name / f"step-{step}.png")


def wandb_history(run_dir: Path, wait: float = 60.0) -> list[dict]:
    """The history rows of a finished W&B offline run, read from its ``run-<id>.wandb`` file.

    The file is a 7-byte header then LevelDB-log framing: 32 KiB blocks of chunks (crc32, uint16 length, type
    FULL 1 / FIRST 2 / MIDDLE 3 / LAST 4), a block's last < 7 bytes padding. Each record is a wandb ``Record``.
    wandb's service process may still be writing after the process that logged has exited, so the file is read
    again until its ``exit`` record is there (at most ``wait`` seconds).
    """
    deadline = time.monotonic() + wait
    while True:
        rows, finished = _wandb_records(run_dir)
        if finished or time.monotonic() > deadline:
            assert finished, f"no exit record in {run_dir} after {wait} s"
            return rows
        time.sleep(0.5)


def _wandb_records(run_dir: Path) -> tuple[list[dict], bool]:
    """(history rows, whether the exit record was read) of the run's record log as it is now."""
    from wandb.proto.wandb_internal_pb2 import Record

    (path,) = run_dir.glob("run-*.wandb")
    raw, pos, parts, rows, finished = path.read_bytes(), 7, b"", [], False
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        parts = data if kind in (1, 2) else parts + data
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(parts)
            kind_of = record.WhichOneof("record_type")
            finished = finished or kind_of == "exit"
            if kind_of == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows, finished


def wandb_images(run_dir: Path, rows: list[dict]) -> dict[tuple[str, int], Path]:
    """(image name, trainer step) -> the PNG file a history row points at (one image per row and key)."""
    out = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("probes/images/") and key.endswith("/filenames"):
                name = key.removeprefix("probes/images/").removesuffix("/filenames")
                assert row[f"probes/images/{name}/_type"] == "images/separated" and len(value) == 1
                out[(name, row["trainer/global_step"])] = run_dir / "files" / value[0]
    return out


def mlflow_metric(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) lines of one metric in an MLflow file-store run (``<timestamp> <value> <step>`` per line)."""
    lines = (run_dir / "metrics" / tag).read_text().split("\n")
    return [(int(step), float(value)) for _, value, step in (line.split() for line in lines if line)]


def test_probe_scalars_and_images_reach_wandb_offline(tmp_path, wandb_env, model):
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="hierlatent-test")
    csv_logger = CSVLogger(tmp_path, name="csv", version=0)
    losses = _log_fake_probe(model, [logger, csv_logger])
    run_id = logger.experiment.id
    logger.experiment.finish()  # flushes the record log; Lightning's finalize does not end the W&B run
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}")
    rows = wandb_history(run_dir)
    scalars = [(r["trainer/global_step"], r["probes/fake/loss"]) for r in rows if "probes/fake/loss" in r]
    assert scalars == [(s, pytest.approx(losses[s])) for s in STEPS]
    images = wandb_images(run_dir, rows)
    assert sorted(images) == [(n, s) for n in IMAGES for s in STEPS]
    for (name, step), png in images.items():
        assert png.parent == run_dir / "files" / "media" / "images" / "probes" / "images"
        pixels = _rgb(png)
        row = next(r for r in rows if f"probes/images/{name}/width" in r and r["trainer/global_step"] == step)
        assert pixels.shape == (row[f"probes/images/{name}/height"], row[f"probes/images/{name}/width"], 3)
        assert np.array_equal(pixels, _csv_png(csv_logger, name, step))  # the image the suite rendered
    # the growing layer x step heatmap has one column more at step 4
    assert _rgb(images[("fake_norms", 4)]).shape[1] > _rgb(images[("fake_norms", 2)]).shape[1]


def test_probe_scalars_and_images_reach_mlflow_file_store(tmp_path, mlflow_env, model):
    from lightning.pytorch.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name="hierlatent-test", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    csv_logger = CSVLogger(tmp_path, name="csv", version=0)
    losses = _log_fake_probe(model, [logger, csv_logger])
    logger.finalize("success")
    run_dir = tmp_path / "mlruns" / logger.experiment_id / logger.run_id
    assert mlflow_metric(run_dir, "probes/fake/loss") == [(s, pytest.approx(losses[s])) for s in STEPS]
    artifacts = run_dir / "artifacts" / "probes" / "images"
    assert sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*.png")) == [
        f"{n}/step-{s}.png" for n in IMAGES for s in STEPS]
    for name in IMAGES:
        for step in STEPS:
            pixels = _rgb(artifacts / name / f"step-{step}.png")
            assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
            assert np.array_equal(pixels, _csv_png(csv_logger, name, step))


# -- the real command line -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fit_config(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny fit with an induction ProbeRunner at the checkpoints (steps 6 and 12), and a shared corpus cache."""
    root = tmp_path_factory.mktemp("fit-loggers")
    runner = {"class_path": "hierlatent.callbacks.probes.ProbeRunner", "init_args": {"n_heldout": 0, "probes": [INDUCTION]}}
    cfg = tiny_fit_config(checkpoint={"every_n_train_steps": 6})
    cfg["trainer"]["callbacks"] = [runner]
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return root / "tiny.yaml", root / "cache"


def _fit(tmp_path, fit_config, logger_args: list[str]) -> tuple[Path, list[str]]:
    """``hierlatent fit`` as a user types it (the loggers' variables already set by the fixtures), with this
    interpreter's ``hierlatent`` script first on PATH (the one that sees wandb/mlflow); returns the printed run
    directory and the stdout lines."""
    bindir = Path(sys.executable).parent
    assert (bindir / "hierlatent").is_file(), f"install hierlatent into {bindir.parent} (pip install --no-deps -e .)"
    cfg, cache = fit_config
    out = run_hierlatent(["fit", "--config", str(cfg), *logger_args], cwd=tmp_path,
                         env={"HIERLATENT_CACHE": str(cache), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    lines = out.stdout.splitlines()
    (run_dir,) = [Path(line.removeprefix("run directory: ")) for line in lines if line.startswith("run directory: ")]
    assert not any(line.startswith("TensorBoard events") or "tensorboard --logdir" in line for line in lines), lines
    assert f"look at them: hierlatent plot --runs {run_dir}" in lines
    assert sorted(p.name for p in (run_dir / "hf").iterdir()) == ["step-12", "step-6"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt", "step=12.ckpt", "step=6.ckpt"]
    return run_dir, lines


def _induction_scalars(run_dir: Path) -> dict[int, float]:
    """step -> the standard induction score of the run's probe JSON."""
    return {s: json.loads((run_dir / "probes" / f"step-{s}.json").read_text())["induction"]["standard"] for s in (6, 12)}


def test_fit_cli_logs_probes_to_wandb_offline(tmp_path, fit_config, wandb_env):
    run_dir, lines = _fit(tmp_path, fit_config, [
        "--trainer.logger", "lightning.pytorch.loggers.WandbLogger", "--trainer.logger.init_args.offline", "true",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "wb")])
    assert "scalars and probe images: WandbLogger (no TensorBoard events)" in lines
    # its own W&B run id, not the default TensorBoard logger's version "run" carried over by jsonargparse
    assert run_dir.parent == tmp_path / "wb" / "lightning_logs" and run_dir.name != "run"
    (wandb_run,) = (tmp_path / "wb" / "wandb").glob(f"offline-run-*-{run_dir.name}")
    rows = wandb_history(wandb_run)
    logged = {r["trainer/global_step"]: r["probes/induction/standard"] for r in rows if "probes/induction/standard" in r}
    assert logged == pytest.approx(_induction_scalars(run_dir))
    assert any("train/loss" in r for r in rows)  # Lightning's own scalars reach the same run
    images = wandb_images(wandb_run, rows)
    assert {s for n, s in images if n == "induction_standard"} == {6, 12} and all(p.is_file() for p in images.values())


def test_fit_cli_logs_probes_to_mlflow(tmp_path, fit_config, mlflow_env):
    run_dir, lines = _fit(tmp_path, fit_config, [
        "--trainer.logger", "lightning.pytorch.loggers.MLFlowLogger",
        "--trainer.logger.init_args.tracking_uri", f"file:{tmp_path / 'mlruns'}"])
    assert "scalars and probe images: MLFlowLogger (no TensorBoard events)" in lines
    assert run_dir.parent.parent == tmp_path / "mlruns" and (run_dir / "meta.yaml").is_file()  # the MLflow run's folder
    assert mlflow_metric(run_dir, "probes/induction/standard") == [
        (s, pytest.approx(v)) for s, v in sorted(_induction_scalars(run_dir).items())]
    assert [s for s, _ in mlflow_metric(run_dir, "train/loss")] == list(range(12))
    artifacts = run_dir / "artifacts" / "probes" / "images" / "induction_standard"
    assert sorted(p.name for p in artifacts.iterdir()) == ["step-12.png", "step-6.png"]
    assert _rgb(artifacts / "step-6.png").shape[2] == 3
