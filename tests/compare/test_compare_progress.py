"""Progress of the commands that do not train (``hierlatent.progress``): periodic lines in a log, a bar on
a terminal, and ``hierlatent compare``'s progress over the runs it reads."""

from __future__ import annotations

import io
import json

from hierlatent.compare.cli import main
from hierlatent.progress import Progress, progress_line


class _Clock:
    """A clock that returns the given times, one per call."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_a_line_for_the_first_item_then_every_interval_and_the_last():
    out = io.StringIO()
    progress = Progress("x", 5, "items", interval=10.0, stream=out, clock=_Clock(0.0, 1.0, 5.0, 12.0, 13.0, 30.0))
    for note in "abcde":
        progress.advance(note)
    assert out.getvalue().splitlines() == [
        "x: 1/5 items (a); elapsed 1 s, ETA 4 s",  # first item: 1 s each, 4 left
        "x: 3/5 items (c); elapsed 12 s, ETA 8 s",  # 11 s after the last line (>= 10)
        "x: 5/5 items (e); elapsed 30 s, ETA 0 s",  # the last item always
    ]


def test_terminal_gets_a_bar_and_no_lines():
    out = _Terminal()
    with Progress("x", 3, "items", stream=out) as progress:
        for note in "abc":
            progress.advance(note)
    text = out.getvalue()
    assert "\r" in text and "3/3" in text and "ETA" not in text


def test_progress_line_without_a_finished_item_has_no_eta():
    assert progress_line("probe-olmo: rank 0", 0, 4, "revisions", 0.0) == "probe-olmo: rank 0: 0/4 revisions; elapsed 0 s, ETA unknown"


def test_compare_reports_the_runs_it_reads(tmp_path, capsys):
    runs = []
    for cond in ("a", "b"):
        for seed in (0, 1):
            run = tmp_path / cond / f"seed-{seed}"
            (run / "probes").mkdir(parents=True)
            (run / "probes" / "step-1.json").write_text(json.dumps({"step": 1, "induction": {"standard": seed + (cond == "b")}}))
            runs.append({"condition": cond, "seed": seed, "status": "finished", "log_dir": str(run)})
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": runs}))
    assert main([str(tmp_path), "--output_dir", str(tmp_path / "r")]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("compare: ") and "runs read" in line]
    assert progress[0].startswith("compare: 1/4 runs read (a/seed-0); elapsed ")
    assert progress[-1].startswith("compare: 4/4 runs read (b/seed-1); elapsed ") and progress[-1].endswith("ETA 0 s")
    assert lines[-1].startswith("compare: 1 test rows over 2 conditions")  # the summary after the progress
