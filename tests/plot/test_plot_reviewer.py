"""Every figure from real tiny runs, judged as a reviewer would: labelled axes, no placeholder panels, CSVs
that hold exactly the plotted numbers, seed bands from a 2-condition x 2-seed sweep directory, and the
degenerate paper Δ of a bias-free model said on the figure. (Slow: five tiny fits with probes.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from figure_checks import check_labels_and_no_placeholders, lines_match_csv, mesh_matches_csv, overlapping_titles
from reviewer_runs import fit_tiny, make_sweep

from hierlatent.plot.cli import FIGURES, _draw, main
from hierlatent.plot.discover import load_sources, load_sweep
from hierlatent.plot.tidy import read_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("reviewer")
    return {"run": fit_tiny(root / "single", "one", "run", seed=3), "sweep": make_sweep(root / "sweep")}


def _figures(sources, groups) -> dict:
    from hierlatent.plot.style import paper_style

    with paper_style():
        return dict(_draw(sources, groups, None, 7.0, 3, "auto", 0.0, False))


def test_single_real_run_every_figure(real, tmp_path, capsys):
    assert main(["--runs", str(real["run"]), "--output_dir", str(tmp_path), "--formats", "png", "--dpi", "50"]) == 0
    for name in FIGURES:
        assert (tmp_path / f"{name}.png").is_file() and (tmp_path / f"{name}.csv").is_file(), name
    figs = _figures(load_sources([real["run"]], None, None), [])
    assert set(figs) == set(FIGURES)
    check_labels_and_no_placeholders(figs)
    assert [ax.get_title() for ax in figs["fig2_loss"].axes if ax.get_title()] == ["run"]  # one panel, no placeholder slots
    for name, fig in figs.items():
        assert read_csv(tmp_path / f"{name}.csv") == read_csv_rows(fig.tidy, tmp_path / f"{name}.again.csv"), name
    rows = read_csv(tmp_path / "fig2_loss.csv")
    assert lines_match_csv(figs["fig2_loss"], rows, "loss", "loss (") == 1  # train; the dashed reference is a CSV row too
    assert lines_match_csv(figs["fig2_loss"], rows, "loss - uniform", "loss −") == 1
    assert [r["value"] for r in rows if r["quantity"] == "reference loss"] == [pytest.approx(math.log(64), rel=1e-6)]
    assert lines_match_csv(figs["fig3_induction"], read_csv(tmp_path / "fig3_induction.csv"), "k-order score") == 1
    assert lines_match_csv(figs["fig3b_standard_induction"], read_csv(tmp_path / "fig3b_standard_induction.csv"), "score") == 3
    hydra = read_csv(tmp_path / "fig4_hydra.csv")
    assert mesh_matches_csv(figs["fig4_hydra"], hydra, "McGrath compensation", "McGrath") == 1
    assert mesh_matches_csv(figs["fig4_hydra"], hydra, "paper Δ (k=1)", "paper") == 1
    fv = read_csv(tmp_path / "fig5a_function_vectors.csv")
    assert mesh_matches_csv(figs["fig5a_function_vectors"], fv, "FV improvement", "run") == 1
    assert all(r["ci_low"] is not None and r["ci_low"] <= r["value"] <= r["ci_high"] for r in fv)  # per-pair stderr -> CI


def read_csv_rows(rows, path):
    from hierlatent.plot.tidy import write_csv

    return read_csv(write_csv(rows, path))


def test_bias_free_paper_delta_is_called_degenerate(real):
    figs = _figures(load_sources([real["run"]], None, None), [])
    for name in ("fig4_hydra", "fig4b_hydra_k2"):
        fig = figs[name]
        assert "Degenerate here" in fig.caption and "logit-lens" in fig.caption, name
        assert any("degenerate" in ax.get_title() for ax in fig.axes), name
    legend = [t.get_text() for t in figs["fig4_hydra"].legends[0].get_texts()]
    assert legend and legend[0].startswith("undefined")  # layer 0 < k is grey, and the legend says what grey is


def test_sweep_seed_bands_and_csv(real, tmp_path):
    from scipy import stats

    assert main(["--sweep", str(real["sweep"]), "--output_dir", str(tmp_path), "--formats", "png", "--dpi", "50"]) == 0
    groups = load_sweep(real["sweep"])
    assert [(t, len(g)) for t, g in groups] == [("fast", 2), ("slow", 2)]
    figs = _figures([], groups)
    check_labels_and_no_placeholders(figs)
    assert {name: overlapping_titles(fig) for name, fig in figs.items()} == {name: [] for name in figs}
    loss = figs["fig2_loss"]
    assert [ax.get_title() for ax in loss.axes if ax.get_title()] == ["fast (2 seeds)", "slow (2 seeds)"]
    rows = read_csv(tmp_path / "fig2_loss.csv")
    assert lines_match_csv(loss, rows, "loss", "loss (") == 2
    train = [r for r in rows if r["panel"] == "fast" and r["quantity"] == "loss" and r["series"] == "train"]
    seeds = [g.scalars["train/loss"] for g in groups[0][1]]
    for r in train:  # value = seed mean, CI = scipy's t-interval over the 2 seeds
        v = [vals[list(steps).index(r["step"])] for steps, vals in seeds]
        lo, hi = stats.t.interval(0.95, 1, loc=np.mean(v), scale=stats.sem(v))
        assert (r["value"], r["ci_low"], r["ci_high"], r["n"]) == (pytest.approx(np.mean(v)), pytest.approx(lo), pytest.approx(hi), 2)
    fast_ax = next(ax for ax in loss.axes if ax.get_title() == "fast (2 seeds)")
    assert fast_ax.collections  # the 95% band
    fv = read_csv(tmp_path / "fig5a_function_vectors.csv")
    assert {r["n"] for r in fv} == {2} and mesh_matches_csv(figs["fig5a_function_vectors"], fv, "FV improvement", "seeds") == 2
    assert "over seeds" in figs["fig5a_function_vectors"].caption
