"""ProbeSuite without a Trainer: the document it assembles, and scalars and images through non-TensorBoard loggers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from matplotlib.image import imread

from hierlatent.callbacks.suite import ProbeSuite
from hierlatent.errors import ProbeError
from tests.callbacks.runner_helpers import TinyLM
from tests.olmo.fake_probe import FakeProbe


class ImageLogger(Logger):
    """A logger with W&B's ``log_image(key, images, step)`` API that records what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int, dict]] = []
        self.images: list[tuple[str, int, tuple]] = []

    @property
    def name(self) -> str:
        return "images"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        self.images.append((key, step, tuple(np.asarray(images[0]).shape)))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return TinyLM().model.eval()


def test_document_is_independent_of_probe_order(model):
    """Probes compose by name and are pure, so permuting the list changes no number, only the key order."""
    probes = [FakeProbe(seed=1), FakeProbe(name="other", seed=2), FakeProbe(name="third", seed=3)]
    one = ProbeSuite(probes).run(model, step=3, tokens=torch.tensor(48))
    two = ProbeSuite(probes[::-1]).run(model, step=3, tokens=48)
    for doc in (one, two):
        doc.pop("probe_seconds")
    assert one == two and one["step"] == 3 and one["tokens"] == 48
    assert one["fake"] != one["other"]  # different seeds, different numbers: the comparison can fail


def test_scalars_and_images_reach_csv_and_wandb_style_loggers(tmp_path, model):
    suite = ProbeSuite([FakeProbe()])
    csv_logger, images = CSVLogger(tmp_path, name="csv", version=0), ImageLogger()
    for step in (2, 4):
        suite.log(suite.run(model, step=step), [csv_logger, images])
    csv_logger.finalize("success")
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4] and all(float(r["probes/fake/loss"]) > 0 for r in rows)
    pngs = sorted(p.relative_to(tmp_path / "csv" / "version_0" / "images").as_posix()
                  for p in (tmp_path / "csv" / "version_0" / "images").rglob("*.png"))
    assert pngs == ["fake_matrix/step-2.png", "fake_matrix/step-4.png", "fake_norms/step-2.png", "fake_norms/step-4.png"]
    assert imread(tmp_path / "csv" / "version_0" / "images" / "fake_norms" / "step-4.png").shape[-1] in (3, 4)
    assert [(s, sorted(m)) for s, m in images.metrics] == [(2, ["probes/fake/loss"]), (4, ["probes/fake/loss"])]
    assert sorted((k, s) for k, s, _ in images.images) == [
        ("probes/images/fake_matrix", 2), ("probes/images/fake_matrix", 4),
        ("probes/images/fake_norms", 2), ("probes/images/fake_norms", 4)]
    assert all(shape[-1] == 3 for _, _, shape in images.images)  # HWC RGB, as W&B takes images
    assert sorted(suite.columns["fake_norms"]) == [2, 4]  # the growing layer x step heatmap has both steps


def test_no_images_when_switched_off(tmp_path, model):
    suite, images = ProbeSuite([FakeProbe()], log_images=False), ImageLogger()
    suite.log(suite.run(model, step=1), [images])
    assert images.metrics and not images.images


def test_empty_suite_and_state_round_trip(model):
    with pytest.raises(ProbeError, match="ProbeSuite.probes: give at least one probe"):
        ProbeSuite([])
    suite = ProbeSuite([FakeProbe()])
    suite.log(suite.run(model, step=5), [])
    fresh = ProbeSuite([FakeProbe()])
    fresh.load_state_dict(suite.state_dict())
    assert fresh.columns == suite.columns and 5 in fresh.columns["fake_norms"]
