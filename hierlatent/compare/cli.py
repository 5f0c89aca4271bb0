"""``hierlatent compare [SWEEP_DIR] --output_dir R [--runs COND=PATH ...] [--metrics GLOB ...] ...``.

Reads a sweep directory (or runs named on the command line, grouped by condition), computes per-condition
seed statistics and the pairwise tests at every shared checkpoint step, and writes the report files
(``hierlatent.compare.report``). Imports no torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from hierlatent.errors import ConfigError
from hierlatent.io import check_writable

_LIST_FLAGS = ("--runs", "--metrics", "--pairs")


def compare(
    sweep_dir: Path | None = None,
    output_dir: Path = Path("report"),
    runs: list[str] = [],
    metrics: list[str] = [],
    pairs: list[str] = [],
    paired: bool | None = None,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
    steps: Literal["all", "final"] = "all",
    align: Literal["step", "index"] = "step",
) -> list[Path]:
    """Seed statistics and Holm-corrected tests between conditions; writes report.md, report.csv, summary.csv, effects.png.

    Args:
        sweep_dir: a `hierlatent sweep` output directory (its manifest.json names the runs).
        output_dir: directory the report files are written to.
        runs: runs instead of (or besides) a sweep: CONDITION=PATH ... (a bare PATH is grouped by its parent's name).
        metrics: glob patterns of the metrics to report (the family the correction covers), e.g. 'hydra.mcgrath.*' 'loss/*'; default all.
        pairs: condition pairs to test as A:B (a − b); default every pair.
        paired: seeds are paired by design (paired t, Wilcoxon); default: what the sweep file says.
        alternative: two-sided, greater (a > b) or less (a < b).
        steps: all shared checkpoint steps, or only the final one (a smaller family).
        align: match checkpoints by training step, or by their index (k-th checkpoint of each run: the same share of training when runs take different step counts).

    Returns:
        The files written.
    """
    from hierlatent.compare.collect import align_by_index, select_metrics
    from hierlatent.compare.report import write_report
    from hierlatent.compare.table import build_table

    if sweep_dir is None and not runs:
        raise ConfigError("compare: give a sweep directory or --runs CONDITION=PATH ...")
    out = Path(output_dir)
    check_writable(out, "--output_dir")
    data, sweep_paired, notes = _read(sweep_dir, list(runs))
    if align == "index":
        align_by_index(data)
        notes.append("checkpoints aligned by index: the step column is the k-th checkpoint of each run (0 = first)")
    groups: dict[str, list] = {}
    for run in data:
        groups.setdefault(run.condition, []).append(run)
    if len(groups) < 2:
        raise ConfigError(f"compare: need at least 2 conditions with finished runs, got {sorted(groups) or 'none'}")
    pair_list = [_pair(p, groups) for p in pairs] or None
    is_paired = sweep_paired if paired is None else paired
    rows, summary, more = build_table(groups, select_metrics(data, list(metrics)), pair_list, is_paired,
                                      alternative, steps == "final")
    files = write_report(out, rows, summary, groups, notes + more, is_paired, alternative)
    print(f"compare: {len(rows)} test rows over {len(groups)} conditions -> {out / 'report.md'}")
    return files


def _read(sweep_dir: Path | None, runs: list[str]):
    """Every run of the sweep and of ``--runs``, with progress over the runs read on standard output, beside
    the summary line (a bar on a terminal, a line every 10 s otherwise); (runs, paired by the sweep file, notes)."""
    from hierlatent.compare.collect import parse_run_args, read_run, sweep_entries
    from hierlatent.progress import Progress

    entries, paired, notes = sweep_entries(Path(sweep_dir)) if sweep_dir is not None else ([], False, [])
    entries += [(c, None, p) for c, p in parse_run_args(runs)]
    data = []
    with Progress("compare", len(entries), "runs read", interval=10.0, stream=sys.stdout) as progress:
        for condition, seed, path in entries:
            data.append(read_run(condition, seed, path))
            progress.advance(f"{condition}/seed-{seed}" if seed is not None else str(path))
    return data, paired, notes


def _pair(text: str, groups: dict) -> tuple[str, str]:
    a, sep, b = text.partition(":")
    if not sep or a not in groups or b not in groups:
        raise ConfigError(f"--pairs: expected A:B with conditions from {sorted(groups)}, got {text!r}")
    return a, b


def main(argv: list[str]) -> int:
    """``hierlatent compare`` entry point (flags from the signature of ``compare``).

    Args:
        argv: the arguments after ``compare``.
    """
    from jsonargparse import ArgumentParser

    from hierlatent.cli_checks import expand_list_flags, parse_or_error

    parser = ArgumentParser(prog="hierlatent compare", description=compare.__doc__.splitlines()[0],
                            exit_on_error=False, allow_abbrev=False)
    parser.add_argument("sweep_dir", type=Path, nargs="?", help="a `hierlatent sweep` output directory.")
    parser.add_function_arguments(compare, skip={"sweep_dir"})
    cfg = parse_or_error(parser, expand_list_flags(list(argv), _LIST_FLAGS), "compare")
    kwargs = {k: v for k, v in vars(parser.instantiate_classes(cfg)).items() if k != "config"}
    compare(**kwargs)
    return 0
