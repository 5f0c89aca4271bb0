"""Reading runs: event-file merging, labels, probe sources, CSV parsing, flag expansion, array helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plot_fixtures import make_fit_run, make_olmo_dir, write_scalars

from hierlatent.errors import ConfigError
from hierlatent.events import EVENT_GLOB, file_order, read_scalars
from hierlatent.plot.cli import _expand_list_flags
from hierlatent.plot.data import ema, layer_matrix, step_edges, vector_series
from hierlatent.plot.discover import corpus_label, find_runs, load_sources, read_fit_run
from hierlatent.plot.sources import Source, probes_from_scalars, read_loss_csv


def test_resumed_run_keeps_last_value_per_step(tmp_path):
    run = tmp_path / "version_0"
    write_scalars(run, {"train/loss": [(0, 5.0), (10, 4.0), (20, 3.0)]}, suffix=".a")
    write_scalars(run, {"train/loss": [(20, 2.5), (30, 2.0)], "val/loss": [(30, 2.2)]}, suffix=".b")
    scalars = read_scalars(list(run.glob(EVENT_GLOB)))
    steps, values = scalars["train/loss"]
    assert steps.tolist() == [0, 10, 20, 30]
    np.testing.assert_allclose(values, [5.0, 4.0, 2.5, 2.0])  # step 20 from the resumed (later) file
    assert scalars["val/loss"][0].tolist() == [30]


def test_resumed_run_with_purge_step_drops_orphans(tmp_path):
    """A run killed at step 25 and resumed from its step-20 checkpoint (the trainer's purge_step)."""
    run = tmp_path / "version_0"
    write_scalars(run, {"train/loss": [(0, 5.0), (10, 4.0), (20, 3.0), (25, 2.8)], "val/loss": [(25, 3.1)]}, suffix=".a")
    write_scalars(run, {"train/loss": [(20, 2.5), (30, 2.0)]}, suffix=".b", purge_step=20)
    scalars = read_scalars(list(run.glob(EVENT_GLOB)))
    assert scalars["train/loss"][0].tolist() == [0, 10, 20, 30]  # 25 was orphaned
    np.testing.assert_allclose(scalars["train/loss"][1], [5.0, 4.0, 2.5, 2.0])
    assert "val/loss" not in scalars  # its only value (step 25) was orphaned


def test_event_files_ordered_by_time_then_counter():
    names = ["events.out.tfevents.1700000001.host.7.10", "events.out.tfevents.1700000001.host.7.9.a", "events.out.tfevents.1600000000.h.1.0"]
    ordered = sorted((Path(n) for n in names), key=file_order)
    assert [p.name for p in ordered] == [names[2], names[1], names[0]]


def test_probes_rebuilt_from_tensorboard_tags_when_no_json(tmp_path):
    run = tmp_path / "version_0"
    tags = {f"probes/induction/k_order/k{k}": [(100, 0.1 * k), (200, 0.05 * k)] for k in range(1, 11)}
    tags["probes/induction/standard"] = [(100, 0.7)]
    tags.update({f"probes/hydra/paper_k1/layer{l}": [(100, -float(l))] for l in (1, 2)})
    tags.update({f"probes/function_vectors/improvement/layer{l}": [(100, 0.5 * l)] for l in range(3)})
    write_scalars(run, tags)
    source = read_fit_run(run)
    assert sorted(source.probes) == [100, 200]
    steps, kv = vector_series(source, ("induction", "k_order"))  # [S, K]
    assert steps.tolist() == [100, 200]
    np.testing.assert_allclose(kv, [[0.1 * k for k in range(1, 11)], [0.05 * k for k in range(1, 11)]], rtol=1e-6)
    assert source.probes[100]["induction"]["standard"] == pytest.approx(0.7)
    _, hydra = layer_matrix(source, ("hydra", "paper", "k1"))  # [L, S]
    assert np.isnan(hydra[0]).all() and hydra[1:, 0].tolist() == [-1.0, -2.0]
    _, fv = layer_matrix(source, ("function_vectors", "improvement"))
    np.testing.assert_allclose(fv[:, 0], [0.0, 0.5, 1.0])


def test_json_wins_over_tensorboard_for_the_same_step(tmp_path):
    run = make_fit_run(tmp_path, "PCFG", probe_steps=(100,))
    write_scalars(run, {"probes/induction/standard": [(100, 0.01), (400, 0.02)]}, suffix=".p")
    source = read_fit_run(run)
    assert source.probes[100]["induction"]["standard"] == pytest.approx(0.9 * (1 - np.exp(-1 / 3)))
    assert source.probes[400]["induction"]["standard"] == pytest.approx(0.02)


def test_probes_from_scalars_empty():
    assert probes_from_scalars({"train/loss": (np.array([1]), np.array([2.0]))}) == {}


def test_corpus_label_from_config_and_fallback(tmp_path):
    assert corpus_label(make_fit_run(tmp_path, "N-gram")) == "N-gram"
    assert corpus_label(make_fit_run(tmp_path, "PCFG", name="exp")) == "PCFG"
    toy = make_fit_run(tmp_path, "Toy")
    (toy / "config.yaml").write_text(
        "data:\n  class_path: hierlatent.data.CorpusDataModule\n  init_args:\n    generator:\n"
        "      class_path: hierlatent.corpora.toy.ToyHierarchy\n      init_args: {flat: true}\n"
    )
    assert corpus_label(toy) == "Toy (flat)"
    (toy / "config.yaml").write_text("data: [unclosed\n")  # unreadable config: fall back to the run name
    (toy / "hparams.yaml").write_text("gen: !!python/object:foo.Bar {}\nclass_path: x.GrammarCorpus\n")
    assert corpus_label(toy) == "Grammar"
    (toy / "hparams.yaml").unlink()
    assert corpus_label(toy) == "toy/version_0"


def test_find_runs_several_versions_and_olmo_inside(tmp_path):
    a = make_fit_run(tmp_path, "PCFG")
    b = a.parent / "version_1"
    write_scalars(b, {"train/loss": [(0, 1.0)]})
    olmo = make_olmo_dir(tmp_path / "olmo_out", revisions=["step1000-tokens4B"])
    (olmo / "tensorboard").mkdir()
    write_scalars(olmo / "tensorboard", {"probes/induction/standard": [(1000, 0.3)]})
    fits, olmos = find_runs(tmp_path)
    assert fits == [a, b] and olmos == [olmo]  # the OLMo tensorboard/ dir is not a fit run
    (tmp_path / "nothing" / "deeper").mkdir(parents=True)
    with pytest.raises(ConfigError, match="--runs: no run found in .*nothing"):
        find_runs(tmp_path / "nothing")


def test_olmo_sources_steps_and_loss(tmp_path):
    olmo = make_olmo_dir(tmp_path / "olmo", revisions=["step1000-tokens4B", "step20000-tokens84B"])
    data = json.loads((olmo / "step20000-tokens84B" / "probes.json").read_text())
    del data["step"]  # the step then comes from the revision name
    (olmo / "step20000-tokens84B" / "probes.json").write_text(json.dumps(data))
    csv = tmp_path / "loss.csv"
    csv.write_text("1000,3.5\n# comment\n20000,2.9\n")  # no header
    (olmo / "main").mkdir()
    (olmo / "main" / "probes.json").write_text(json.dumps({"step": None, "induction": {"standard": 0.5}}))
    [source] = load_sources([], olmo, csv)
    assert source.kind == "olmo" and sorted(source.probes) == [1000, 20000]
    assert len(source.notes) == 1 and "'main' has no step; skipped" in source.notes[0]
    assert source.loss[0].tolist() == [1000, 20000] and source.loss[1].tolist() == [3.5, 2.9]
    with pytest.raises(ConfigError, match="--olmo_loss_csv needs --olmo"):
        load_sources([olmo], None, csv)


def test_loss_csv_errors(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        read_loss_csv(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("step,loss\n")
    with pytest.raises(ConfigError, match="no 'step,loss' rows"):
        read_loss_csv(tmp_path / "empty.csv")


def test_expand_list_flags():
    assert _expand_list_flags(["--runs", "a", "b", "--dpi", "5", "--runs", "c"]) == ["--runs", '["a", "b", "c"]', "--dpi", "5"]
    assert _expand_list_flags(["--formats=svg"]) == ["--formats", '["svg"]']
    assert _expand_list_flags(["--runs", "[a, b]"]) == ["--runs", "[a, b]"]
    assert _expand_list_flags(["--olmo", "x"]) == ["--olmo", "x"]


def test_array_helpers():
    np.testing.assert_allclose(ema(np.array([1.0, 3.0]), 0.5), [1.0, (0.25 + 1.5) / 0.75])
    assert ema(np.array([1.0, 2.0]), 0.0).tolist() == [1.0, 2.0]
    np.testing.assert_allclose(step_edges(np.array([0, 10, 30]), log=False), [-5, 5, 20, 40])
    np.testing.assert_allclose(step_edges(np.array([10, 1000]), log=True), [1, 100, 10000])
    s = Source(label="x", kind="fit", path=Path("."), probes={5: {"a": {"b": [1, None, "z"]}}})
    steps, m = layer_matrix(s, ("a", "b"))
    assert steps.tolist() == [5] and m[0, 0] == 1 and np.isnan(m[1:, 0]).all()

