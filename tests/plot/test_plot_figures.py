"""End-to-end tests of ``hierlatent plot``: every figure rendered from fake logs in the real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from figure_checks import data_axes, overlapping_titles, row_title
from plot_fixtures import N_LAYERS, hydra_delta, make_fit_run, make_loss_csv, make_olmo_dir

from hierlatent.plot import figures as F
from hierlatent.plot.cli import FIGURES, main
from hierlatent.plot.discover import load_sources


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    """N-gram and PCFG runs, a run without probes, an OLMo dir and its loss CSV."""
    root = tmp_path_factory.mktemp("plotlogs")
    return {
        "runs": root / "runs",
        "pcfg": make_fit_run(root / "runs", "PCFG"),
        "ngram": make_fit_run(root / "runs", "N-gram"),
        "toy": make_fit_run(root / "toy_only", "Toy", probe_steps=()),
        "olmo": make_olmo_dir(root / "olmo"),
        "csv": make_loss_csv(root / "olmo_loss.csv"),
    }


def _png_std(path: Path) -> float:
    import matplotlib.image

    return float(matplotlib.image.imread(str(path))[..., :3].std())


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _titled(fig, title: str):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def test_cli_renders_every_figure(logs, tmp_path, capsys):
    out = tmp_path / "figs"
    argv = ["--runs", str(logs["runs"]), "--olmo", str(logs["olmo"]), "--olmo_loss_csv", str(logs["csv"])]
    assert main(argv + ["--output_dir", str(out), "--dpi", "60"]) == 0
    for name in FIGURES:
        for fmt in ("png", "pdf"):
            path = out / f"{name}.{fmt}"
            assert path.is_file() and path.stat().st_size > 1000, path
        assert _png_std(out / f"{name}.png") > 0.05, f"{name}.png looks blank"
    assert (out / "fig2_loss.pdf").read_bytes().startswith(b"%PDF")
    assert "warning" not in capsys.readouterr().err


def test_all_paper_panels_have_data(logs):
    sources = load_sources([logs["runs"]], logs["olmo"], logs["csv"])
    assert [s.label for s in sources] == ["N-gram", "PCFG", "OLMo"]
    opts = F.Options()
    panels = F.panels(sources)
    for draw in (F.fig_loss, F.fig_k_order, F.fig_standard_induction, F.fig_hydra):
        fig, filled = draw(panels, opts)
        assert filled == 3, draw.__name__
        assert [ax.get_title().split("\n")[0] for ax in fig.axes[:3]] == ["N-gram", "PCFG", "OLMo"]
    fig, filled = F.fig_function_vectors(F.panels([s for s in sources if F.has_function_vectors(s)], ("PCFG",)), opts)
    assert filled == 1


def test_loss_panel_has_reference_lines_and_olmo_log_axis(logs):
    sources = load_sources([logs["runs"]], logs["olmo"], logs["csv"])
    fig, _ = F.fig_loss(F.panels(sources), F.Options())
    pcfg = _titled(fig, "PCFG")
    labels = [line.get_label() for line in pcfg.get_lines()]
    assert {"train", "val", "latent_known", "role_unigram"} <= set(labels)
    ngram = [line.get_label() for line in _titled(fig, "N-gram").get_lines()]
    assert "bayes_optimal" in ngram and "bayes_optimal_stderr" not in ngram  # an error bar is not a loss line
    dashed = [line for line in pcfg.get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_ydata()[0] for line in dashed) == pytest.approx([3.9, 4.87])  # float32 in events
    assert _titled(fig, "OLMo").get_xscale() == "log"  # steps 1k ... 738k
    assert pcfg.get_xscale() == "linear"  # starts at step 0


def test_k_order_one_line_with_k_spread_band(logs):
    sources = load_sources([logs["runs"]], logs["olmo"], None)
    fig, _ = F.fig_k_order(F.panels(sources), F.Options())
    pcfg = _titled(fig, "PCFG")
    [line] = pcfg.get_lines()
    assert pcfg.get_ylim() == (0.0, 1.0) and len(pcfg.collections) == 1  # one band: the range over k
    t = np.array([1 - np.exp(-s / 300) for s in (0, 100, 200, 300)])
    np.testing.assert_allclose(line.get_ydata(), t * np.mean([1 - 0.07 * k for k in range(10)]), atol=1e-6)
    assert "duplicate-token score" in fig.caption and "coincide" in fig.caption


def test_hydra_heatmap_values_masks_and_shared_scale(logs):
    sources = load_sources([logs["runs"]], logs["olmo"], None)
    fig, _ = F.fig_hydra(F.panels(sources), F.Options(), k=1)
    meshes = {ax.get_title(): ax.collections[0] for ax in data_axes(fig) if "paper" in row_title(ax)}
    assert set(meshes) == {"N-gram", "PCFG", "OLMo"}  # the row names the quantity, the panel its source
    pcfg = meshes["PCFG"].get_array().reshape(N_LAYERS, -1)  # [L, S]
    steps = [0, 100, 200, 300]
    expected = np.array([[hydra_delta("PCFG", l, s) for s in steps] for l in range(N_LAYERS)])
    assert np.ma.getmaskarray(pcfg)[0].all() and not np.ma.getmaskarray(pcfg)[1:].any()  # layer 0 < k masked
    np.testing.assert_allclose(pcfg[1:].data, expected[1:])
    assert float(meshes["N-gram"].get_array().min()) > 0  # N-gram: positive delta, no compensation
    norms = {(m.norm.vmin, m.norm.vmax) for m in meshes.values()}
    vmax = max(float(abs(m.get_array()).max()) for m in meshes.values())
    assert len(norms) == 1 and next(iter(norms)) == (pytest.approx(-vmax), pytest.approx(vmax))  # one diverging scale
    mcgrath = [ax for ax in data_axes(fig) if row_title(ax).startswith("McGrath compensation")]
    assert len(mcgrath) == 3  # the Hydra figure proper, above the paper's Δ
    assert "undefined" in [t.get_text() for t in fig.legends[0].get_texts()][0]  # the grey cells have a legend entry


def test_missing_sources_are_labelled_empty_panels(logs, tmp_path, capsys):
    from hierlatent.plot.sources import PAPER_ORDER

    sources = load_sources([logs["pcfg"]], None, None)
    fig, filled = F.fig_k_order(F.panels(sources, PAPER_ORDER), F.Options())
    assert filled == 1
    assert "no OLMo run given" in _texts(fig) and "no N-gram run given" in _texts(fig)
    assert main(["--runs", str(logs["pcfg"]), "--output_dir", str(tmp_path), "--formats", "png", "--dpi", "50"]) == 0
    assert _png_std(tmp_path / "fig3_induction.png") > 0.05


def test_run_without_probes_warns_and_says_so(logs, tmp_path, capsys):
    rc = main(["--runs", str(logs["toy"].parents[1]), "--output_dir", str(tmp_path), "--formats", "png", "--dpi", "50"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "warning: no probe results in" in err and str(logs["toy"]) in err
    sources = load_sources([logs["toy"]], None, None)
    assert sources[0].label == "Toy" and sources[0].reference_losses == {"bayes_optimal": pytest.approx(0.9), "bayes_optimal_stderr": pytest.approx(0.02)}
    fig, filled = F.fig_hydra(F.panels(sources), F.Options())
    assert filled == 0
    assert any(t.startswith("no probe results in") and str(logs["toy"]) in t for t in _texts(fig))
    fig, filled = F.fig_loss(F.panels(sources), F.Options())
    assert filled == 1  # the loss panel still has data


def test_without_paper_panels_only_given_runs_are_drawn(logs, tmp_path):
    argv = ["--runs", str(logs["ngram"]), "--paper_panels", "false", "--formats", "png", "--dpi", "40"]
    assert main(argv + ["--output_dir", str(tmp_path)]) == 0
    assert not (tmp_path / "fig5a_function_vectors.png").exists()  # no run has function vectors: not drawn
    sources = load_sources([logs["ngram"]], None, None)
    fig, filled = F.fig_loss(F.panels(sources, ()), F.Options())
    assert filled == 1 and [ax.get_title() for ax in fig.axes if ax.get_title()] == ["N-gram"]


def test_panel_order_and_duplicate_titles(tmp_path):
    make_fit_run(tmp_path, "Toy", probe_steps=(0,))
    make_fit_run(tmp_path, "PCFG", name="pcfg_b", probe_steps=(0,))
    make_fit_run(tmp_path, "PCFG", name="pcfg_a", probe_steps=(0,))
    make_fit_run(tmp_path, "N-gram", probe_steps=(0,))
    sources = load_sources([tmp_path], None, None)
    assert [s.title for s in sources] == ["N-gram", "PCFG (pcfg_a/version_0)", "PCFG (pcfg_b/version_0)", "Toy"]
    titles = [p.title for p in F.panels(sources, ("N-gram", "PCFG", "OLMo"))]
    assert titles == ["N-gram", "PCFG (pcfg_a/version_0)", "PCFG (pcfg_b/version_0)", "OLMo", "Toy"]
    assert [p.title for p in F.panels(sources, ())] == [s.title for s in sources]


@pytest.mark.parametrize(
    "argv_fn, message",
    [
        (lambda d: [], "--runs, --olmo and --sweep are all empty"),
        (lambda d: ["--runs", str(d / "empty")], "no run found in"),
        (lambda d: ["--runs", str(d / "nope")], "is not a directory"),
        (lambda d: ["--olmo", str(d / "empty")], "--olmo: no probe-olmo output in"),
        (lambda d: ["--runs", str(d / "empty"), "--formats", "png", "jpgx"], "--formats: unknown format 'jpgx'"),
        (lambda d: ["--runs", str(d / "empty"), "--figures", "fig9"], "--figures: unknown figure 'fig9'"),
        (lambda d: ["--runs", str(d / "empty"), "--dpi", "0"], "--dpi: must be positive"),
        (lambda d: ["--runs", str(d / "empty"), "--smooth", "1.0"], "--smooth"),
        (lambda d: ["--olmo", str(d / "olmo"), "--olmo_loss_csv", str(d / "bad.csv")], "bad.csv line 3"),
        (lambda d: ["--runs", str(d / "badjson")], "cannot read probe results"),
        (lambda d: ["--runs", str(d / "empty"), "--output_dir", str(d / "bad.csv")], "--output_dir: "),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, argv_fn, message):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    make_olmo_dir(tmp_path / "olmo", revisions=["step1000-tokens4B"])
    (tmp_path / "bad.csv").write_text("step,loss\n1000,3.2\n2000,abc\n")
    (tmp_path / "badjson" / "probes").mkdir(parents=True)
    (tmp_path / "badjson" / "probes" / "step-5.json").write_text("{not json")
    out = tmp_path / "figs"
    argv = argv_fn(tmp_path)
    assert main(argv if "--output_dir" in argv else argv + ["--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()  # failed before drawing anything


def test_help_lists_documented_flags(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--runs", "--olmo", "--olmo_loss_csv", "--output_dir", "--formats", "--dpi", "--figures"):
        assert flag in text
    assert "panels per row" in text  # docstrings become the help text


def test_config_file_and_plain_list_values(logs, tmp_path):
    cfg = tmp_path / "plot.yaml"
    cfg.write_text(f"runs: [{logs['pcfg']}]\nformats: [svg]\nfigures: [fig2_loss]\noutput_dir: {tmp_path / 'a'}\n")
    assert main(["--config", str(cfg)]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["fig2_loss.csv", "fig2_loss.svg"]
    argv = ["--runs", str(logs["pcfg"]), str(logs["ngram"]), "--figures", "fig3_induction", "fig4_hydra", "--formats", "png"]
    assert main(argv + ["--output_dir", str(tmp_path / "b"), "--dpi", "40"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["fig3_induction.csv", "fig3_induction.png", "fig4_hydra.csv", "fig4_hydra.png"]


def test_headwise_compensation_row_and_csv(tmp_path):
    import json

    from hierlatent.plot.tidy import read_csv

    run = make_fit_run(tmp_path, "PCFG", probe_steps=(0, 100))
    doc = json.loads((run / "probes" / "step-100.json").read_text())
    doc["hydra"]["headwise"] = {"compensation": [[0.1 * l + 0.01 * h for h in range(2)] for l in range(N_LAYERS)]}
    (run / "probes" / "step-100.json").write_text(json.dumps(doc))
    assert main(["--runs", str(run), "--figures", "fig4_hydra", "--formats", "png", "--dpi", "40", "--output_dir", str(tmp_path / "f")]) == 0
    fig, _ = F.fig_hydra(F.panels(load_sources([run], None, None)), F.Options())
    [ax] = [a for a in fig.axes if row_title(a).startswith("headwise") and a.get_title() == "PCFG\nstep 100"]
    assert ax.get_xlabel() == "head" and ax.get_ylabel() == "layer"
    rows = [r for r in read_csv(tmp_path / "f" / "fig4_hydra.csv") if r["quantity"] == "headwise compensation"]
    assert [(r["layer"], r["head"], r["value"]) for r in rows] == [(l, h, pytest.approx(0.1 * l + 0.01 * h)) for l in range(N_LAYERS) for h in range(2)]
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(N_LAYERS, 2), [[0.1 * l + 0.01 * h for h in range(2)] for l in range(N_LAYERS)])


def test_overlap_check_finds_titles_drawn_over_each_other():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 2.1), layout="constrained")
    for ax in fig.subplots(1, 3):
        ax.set_title("pcfg (5 seeds): paper Δ (k=1) — degenerate")  # fig4's old one-line titles
    assert len(overlapping_titles(fig)) == 2
    for ax in fig.axes:
        ax.set_title("pcfg (5 seeds)")
    assert overlapping_titles(fig) == []


@pytest.mark.parametrize("width, max_columns, paper_panels", [(7.0, 3, False), (7.0, 3, True), (3.4, 1, False)])
def test_no_figure_draws_titles_over_each_other(logs, width, max_columns, paper_panels):
    from hierlatent.plot.cli import _draw
    from hierlatent.plot.style import paper_style

    sources = load_sources([logs["runs"], logs["toy"]], logs["olmo"], logs["csv"])
    sources = sources[:1] if paper_panels else sources  # one run among the paper's placeholders
    with paper_style():
        figs = dict(_draw(sources, [], list(FIGURES), width, max_columns, "auto", 0.0, paper_panels))
        assert list(figs) == list(FIGURES)
        for name, fig in figs.items():
            assert overlapping_titles(fig) == [], name
