"""Smoke tests of ``tests/benchmarks/bench_scaling.py``: its growth exponent and verdict on known answers, the
in-process probe rows at tiny size, and (``-m slow``) the subprocess rows (generate, probe-olmo, sweep) at
three tiny sizes each."""

from __future__ import annotations

import math

import pytest

from tests.benchmarks import bench_scaling as bs


def _row(kind: str, costs: list[float], work: tuple[float, ...] = (1, 2, 4, 8)) -> bs.Row:
    row = bs.Row("r", "s", kind)
    for w, c in zip(work, costs):
        row.add(str(w), w, c)
    return row


def test_exponent_and_verdict_known_answers():
    quadratic = _row("time", [w * w for w in (1, 2, 4, 8)])
    assert quadratic.exponent() == pytest.approx(2.0) and quadratic.flagged()
    linear = _row("time", [3 * w for w in (1, 2, 4, 8)])
    assert linear.exponent() == pytest.approx(1.0) and not linear.flagged()
    assert linear.per_unit() == pytest.approx(3.0)
    overhead = _row("time", [10 + w for w in (1, 2, 4, 8)])  # a fixed cost: exponent well below 1, not flagged
    assert overhead.exponent() < 0.5 and overhead.per_unit() == pytest.approx(1.0) and not overhead.flagged()
    flat = _row("memory", [500.0, 501.0, 500.5, 502.0])
    assert abs(flat.exponent()) < 0.01 and not flat.flagged()
    growing = _row("memory", [100.0, 200.0, 400.0, 800.0])  # memory linear in corpus size is a defect
    assert growing.flagged()


def test_report_names_the_rows_worse_than_their_work():
    rows = [_row("time", [1.0, 2.0, 4.0, 8.0]), _row("time", [1.0, 4.0, 16.0, 64.0])]
    rows[1].name = "superlinear"
    lines = bs.report(rows)
    assert "WORSE THAN WORK" in lines[2] and "WORSE" not in lines[1]
    assert lines[-1] == "scaling: worse than their work: superlinear"
    assert bs.report(rows[:1])[-1] == "scaling: all rows grow no worse than their work"


def test_probe_rows_at_tiny_size():
    rows = bs.probe_rows([(3, 8), (3, 16), (4, 16)], [1, 2, 3], repeats=1, base=(3, 8))
    names = [r.name for r in rows]
    assert names == [f"{p} vs {axis}" for axis in ("layers x width", "stimuli") for p in ("induction", "hydra", "fv")]
    for r in rows:
        assert len(r.cost) == 3 and all(c > 0 for c in r.cost) and math.isfinite(r.exponent())
    assert rows[0].work == sorted(rows[0].work) and rows[0].labels == ["3x8", "3x16", "4x16"]


@pytest.mark.slow
def test_subprocess_rows_at_tiny_size(tmp_path):
    gen_time, gen_mem = bs.generation_rows([100, 200, 400], tmp_path)
    assert gen_time.work == sorted(gen_time.work) and len(set(gen_time.work)) == 3
    assert not gen_mem.flagged()  # generation streams: peak memory does not grow with the corpus
    (olmo,) = bs.probe_olmo_rows([1, 2, 3], [1], tmp_path)
    (sweep,) = bs.sweep_rows([1, 2, 3], [2], tmp_path)
    for row in (olmo, sweep):
        assert len(row.cost) == 3 and all(c > 0 for c in row.cost)
