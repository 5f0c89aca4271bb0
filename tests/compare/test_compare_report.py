"""``hierlatent compare``: statistics against scipy, the false-positive rate, a planted effect, reports and errors."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from hltest import run_hierlatent

from hierlatent.compare.stats import compare_pair, hedges_g, holm, summarize
from hierlatent.errors import ConfigError


def _fake_run(root, cond, seed, values_by_step: dict[int, dict]):
    """A run dir with only probe documents: {step: {"induction": {...}}}."""
    run = root / cond / f"seed-{seed}"
    (run / "probes").mkdir(parents=True)
    for step, doc in values_by_step.items():
        (run / "probes" / f"step-{step}.json").write_text(json.dumps({"step": step, "tokens": step * 10, **doc}))
    return run


def _fake_sweep(root, data: dict[str, list[float]], steps=(0, 10), paired=False):
    runs = []
    for cond, values in data.items():
        for seed, v in enumerate(values):
            docs = {s: {"induction": {"standard": v + s, "per_head": {"standard": [[1.0]]}},
                        "hydra": {"mcgrath": {"compensation": [v, 2 * v], "ablation": "zero"}}} for s in steps}
            _fake_run(root, cond, seed, docs)
            runs.append({"condition": cond, "seed": seed, "status": "finished", "log_dir": str(root / cond / f"seed-{seed}")})
    (root / "manifest.json").write_text(json.dumps({"format": 1, "paired": paired, "runs": runs}))


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_holm_matches_a_hand_checked_case():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, math.nan, 0.01])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.2) and out[2] == pytest.approx(0.02)


def test_summary_interval_is_the_t_interval():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    s = summarize(x)
    lo, hi = stats.t.interval(0.95, 3, loc=x.mean(), scale=stats.sem(x))
    assert (s.n, s.mean, s.std) == (4, pytest.approx(3.5), pytest.approx(x.std(ddof=1)))
    assert (s.ci_lo, s.ci_hi) == (pytest.approx(lo), pytest.approx(hi))
    assert math.isnan(summarize(np.array([1.0])).ci_lo)


def test_one_distribution_gives_at_most_the_nominal_false_positive_rate():
    rng = np.random.default_rng(0)
    trials, n = 2000, 5
    hits = {"welch": 0, "mwu": 0, "paired_t": 0, "wilcoxon": 0}
    for _ in range(trials):
        a, b = rng.normal(size=n), rng.normal(size=n)
        ind, par = compare_pair(a, b), compare_pair(a, b, paired=True)
        hits["welch"] += ind.p_t < 0.05
        hits["mwu"] += ind.p_rank < 0.05
        hits["paired_t"] += par.p_t < 0.05
        hits["wilcoxon"] += par.p_rank < 0.05
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)  # nominal + 3 standard errors of the estimate
    assert all(h / trials <= bound for h in hits.values()), hits


def test_a_planted_difference_is_detected():
    rng = np.random.default_rng(1)
    a, b = rng.normal(2.0, 1.0, size=10), rng.normal(0.0, 1.0, size=10)
    t = compare_pair(a, b, alternative="greater")
    assert t.p_t < 0.01 and t.p_rank < 0.01 and t.diff_ci_lo > 0 and t.effect_size > 1
    assert compare_pair(a, b, alternative="less").p_t > 0.99


def test_effect_sizes():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])
    assert hedges_g(a, b) == pytest.approx(1.0 * (1 - 3 / (4 * 6 - 9)))
    assert compare_pair(a, b + np.array([0.0, 0.5, -0.5]), paired=True).effect_size == pytest.approx(
        np.mean(a - b - [0, .5, -.5]) / np.std(a - b - [0, .5, -.5], ddof=1))


def test_report_csv_equals_scipy_on_the_same_numbers(tmp_path):
    data = {"x": [0.1, 0.5, 0.35, 0.2], "y": [0.6, 0.9, 0.55, 0.8, 1.1]}
    _fake_sweep(tmp_path / "sw", data)
    run_hierlatent(["compare", str(tmp_path / "sw"), "--output_dir", str(tmp_path / "r")], cwd=tmp_path)
    rows = _rows(tmp_path / "r" / "report.csv")
    assert {"metric", "step", "a", "b", "n_a", "n_b", "mean_a", "mean_b", "p_welch", "p_mwu", "p_holm"} <= set(rows[0])
    by_key = {(r["metric"], int(r["step"])): r for r in rows}
    assert set(by_key) == {(m, s) for m in ("induction.standard", "hydra.mcgrath.compensation[0]",
                                            "hydra.mcgrath.compensation[1]", "hydra.mcgrath.compensation.max")
                           for s in (0, 10)}
    r = by_key[("induction.standard", 10)]
    a, b = np.array(data["x"]) + 10, np.array(data["y"]) + 10
    assert float(r["p_welch"]) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert float(r["p_mwu"]) == pytest.approx(stats.mannwhitneyu(a, b).pvalue, rel=1e-9)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert (float(r["diff_ci_lo"]), float(r["diff_ci_hi"])) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert (int(r["n_a"]), int(r["n_b"]), float(r["mean_a"])) == (4, 5, pytest.approx(a.mean()))
    family = [float(x["p_welch"]) for x in rows]
    assert [float(x["p_holm"]) for x in rows] == pytest.approx(holm(family))
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Family: 8 tests" in md and "| `induction.standard` | 10 |" in md
    assert (tmp_path / "r" / "effects.png").stat().st_size > 1000
    summary = _rows(tmp_path / "r" / "summary.csv")
    assert {(s["metric"], s["condition"]) for s in summary} >= {("induction.standard", "x"), ("induction.standard", "y")}


def test_paired_sweep_uses_paired_tests(tmp_path):
    data = {"x": [0.1, 0.5, 0.35, 0.2], "y": [0.3, 0.6, 0.6, 0.3]}
    _fake_sweep(tmp_path / "sw", data, steps=(5,), paired=True)
    run_hierlatent(["compare", str(tmp_path / "sw"), "--output_dir", str(tmp_path / "r"), "--alternative", "less",
                    "--metrics", "induction.*", "hydra.mcgrath.compensation[1]"], cwd=tmp_path)
    rows = {r["metric"]: r for r in _rows(tmp_path / "r" / "report.csv")}
    assert sorted(rows) == ["hydra.mcgrath.compensation[1]", "induction.standard"]  # brackets are literal
    r, layer1 = rows["induction.standard"], rows["hydra.mcgrath.compensation[1]"]
    a, b = np.array(data["x"]) + 5, np.array(data["y"]) + 5
    assert r["primary"] == "paired_t" and r["alternative"] == "less"
    assert float(r["p_paired_t"]) == pytest.approx(stats.ttest_rel(a, b, alternative="less").pvalue)
    assert float(r["p_wilcoxon"]) == pytest.approx(stats.wilcoxon(a, b, alternative="less").pvalue)
    assert float(r["p_holm"]) == pytest.approx(holm([float(r["p_paired_t"]), float(layer1["p_paired_t"])])[0])


def test_misaligned_steps_one_seed_and_missing_metrics_are_reported(tmp_path):
    sw = tmp_path / "sw"
    _fake_run(sw, "x", 0, {0: {"induction": {"standard": 0.1}}, 10: {"induction": {"standard": 0.2}}})
    _fake_run(sw, "x", 1, {0: {"induction": {"standard": 0.3}}, 10: {"induction": {"standard": 0.4},
                                                                     "syntax": {"verb_after_subject": 0.5}}})
    _fake_run(sw, "y", 0, {0: {"induction": {"standard": 0.1}}, 20: {"induction": {"standard": 0.2}}})
    runs = [{"condition": c, "seed": s, "status": "finished", "log_dir": str(sw / c / f"seed-{s}")}
            for c, s in (("x", 0), ("x", 1), ("y", 0))] + [{"condition": "y", "seed": 1, "status": "failed"}]
    (sw / "manifest.json").write_text(json.dumps({"runs": runs}))
    run_hierlatent(["compare", str(sw), "--output_dir", str(tmp_path / "r")], cwd=tmp_path)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "condition y has 1 seed(s): no test" in md
    assert "steps [10, 20] are not shared and were dropped" in md
    assert "syntax.verb_after_subject: missing from x runs seed-0" in md
    assert "y/seed-1 left out: status failed" in md
    rows = _rows(tmp_path / "r" / "report.csv")
    assert [int(r["step"]) for r in rows if r["metric"] == "induction.standard"] == [0]
    assert all(r["p_welch"] == "" and "fewer than 2 seeds" in r["note"] for r in rows)


def test_runs_named_on_the_command_line(tmp_path):
    for cond, vals in (("p", [1.0, 2.0]), ("q", [3.0, 5.0])):
        for seed, v in enumerate(vals):
            _fake_run(tmp_path, cond, seed, {4: {"induction": {"standard": v}}})
    run_hierlatent(["compare", "--runs", "p=p/seed-0", "p=p/seed-1", "q/seed-0", "q/seed-1",
                    "--output_dir", "r", "--pairs", "q:p"], cwd=tmp_path)
    (r,) = _rows(tmp_path / "r" / "report.csv")
    assert (r["a"], r["b"], float(r["diff"])) == ("q", "p", pytest.approx(2.5))


@pytest.mark.parametrize("args, message", [
    (["nowhere"], "no manifest.json"),
    (["--runs", "a=nowhere"], "run directory nowhere does not exist"),
    ([], "give a sweep directory"),
    (["--runs", "a=one"], "need at least 2 conditions"),
    (["--runs", "a=one", "b=one", "--pairs", "a:c"], "--pairs"),
    (["--runs", "a=one", "b=one", "--metrics", "nothing*"], "--metrics: no metric matches"),
    (["--runs", "a=one", "b=one", "--steps", "middle"], "steps"),
])
def test_compare_errors_are_one_line(tmp_path, args, message):
    _fake_run(tmp_path, "one", 0, {1: {"induction": {"standard": 0.1}}})
    (tmp_path / "one").rename(tmp_path / "tmp")
    (tmp_path / "tmp" / "seed-0").rename(tmp_path / "one")
    out = run_hierlatent(["compare", *args, "--output_dir", "r"], cwd=tmp_path, check=False)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_load_sweep_without_manifest_raises(tmp_path):
    from hierlatent.compare.collect import read_sweep

    with pytest.raises(ConfigError, match="no manifest.json"):
        read_sweep(tmp_path)


def test_flatten_names_scalars_entries_and_maxima():
    from hierlatent.compare.collect import flatten

    doc = {"step": 5, "tokens": 50, "probe_seconds": {"x": 1.0},
           "hydra": {"headwise": {"compensation": [[0.1, 0.4], [None, -0.2]], "ablation": "zero"},
                     "mcgrath": {"compensation": [0.5, None], "matrix": [[1.0]]}},
           "query_fv": {"transfer": [0.2, 0.7, 0.1], "n_pairs": 32}, "induction": {"per_head": {"standard": [[1.0]]}}}
    out = flatten(doc)
    assert out["hydra.headwise.compensation.max[0]"] == 0.4 and out["hydra.headwise.compensation.max[1]"] == -0.2
    assert out["query_fv.transfer.max"] == 0.7 and out["query_fv.transfer[1]"] == 0.7
    assert out["hydra.mcgrath.compensation[0]"] == 0.5 and math.isnan(out["hydra.mcgrath.compensation[1]"])
    assert out["query_fv.n_pairs"] == 32
    assert not any(k.startswith(("step", "tokens", "probe_seconds", "induction", "hydra.mcgrath.matrix")) for k in out)


def test_align_by_index_matches_runs_of_different_lengths(tmp_path):
    sw = tmp_path / "sw"
    for seed, v in enumerate([0.1, 0.3]):
        _fake_run(sw, "x", seed, {0: {"induction": {"standard": 0.0}}, 125: {"induction": {"standard": v}}})
        _fake_run(sw, "y", seed, {0: {"induction": {"standard": 0.0}}, 126: {"induction": {"standard": v + 1}}})
    runs = [{"condition": c, "seed": s, "status": "finished", "log_dir": str(sw / c / f"seed-{s}")}
            for c in ("x", "y") for s in (0, 1)]
    (sw / "manifest.json").write_text(json.dumps({"runs": runs}))
    run_hierlatent(["compare", str(sw), "--output_dir", "r", "--steps", "final"], cwd=tmp_path)
    assert [int(r["step"]) for r in _rows(tmp_path / "r" / "report.csv")] == [0]  # only step 0 is shared
    assert "--align index" in (tmp_path / "r" / "report.md").read_text()
    run_hierlatent(["compare", str(sw), "--output_dir", "r2", "--steps", "final", "--align", "index"], cwd=tmp_path)
    (r,) = _rows(tmp_path / "r2" / "report.csv")
    assert int(r["step"]) == 1 and float(r["diff"]) == pytest.approx(-1.0)


@pytest.mark.parametrize("kind, unit", [("cohen_dz", "d_z"), ("hedges_g", "Hedges' g")])
def test_effects_figure_names_the_effect_size_it_plots(tmp_path, monkeypatch, kind, unit):
    import matplotlib.axes

    from hierlatent.compare.report import effects_figure

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel", lambda self, text, **kw: labels.append(text))
    row = dict(metric="m", a="x", b="y", step=5, effect_size=1.0, diff=0.5, diff_ci_lo=0.1, diff_ci_hi=0.9,
               p_holm=0.2, effect_kind=kind)
    effects_figure([row], tmp_path / "effects.png")
    assert (tmp_path / "effects.png").stat().st_size > 0
    assert len(labels) == 1 and unit in labels[0]
