"""``hierlatent sweep SWEEP_FILE --output_dir D [--seeds S] [--launcher local|slurm] [--parallel P] [--dry_run] [-- FIT_ARGS...]``.

Runs every (condition, seed) of a sweep file as its own ``hierlatent fit`` into ``D/<condition>/seed-<s>/``.
Rerunning the same command skips finished runs and resumes killed ones from their last checkpoint; a failed
run is recorded with its error and the others go on; the exit status is 1 if any run failed. Imports no
torch: each fit is a child process.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Literal

from hierlatent.errors import ConfigError
from hierlatent.io import check_writable
from hierlatent.sweep.loggers import check_loggers
from hierlatent.sweep.plan import FINISHED, check_reuse, plan_runs, write_manifest
from hierlatent.sweep.spec import load_sweep, parse_seeds


def _say(message: str) -> None:
    print(f"sweep: {message}", flush=True)


def sweep(
    sweep_file: Path,
    output_dir: Path,
    seeds: str | None = None,
    launcher: Literal["local", "slurm"] = "local",
    parallel: int | None = None,
    dry_run: bool = False,
    fit_args: tuple[str, ...] = (),
) -> int:
    """Run a seed sweep: every (condition, seed) as one ``hierlatent fit``. Fit flags after ``--`` go to every run.

    Args:
        sweep_file: the sweep YAML (conditions, seeds; see configs/sweeps/).
        output_dir: sweep directory D; run logs in D/<condition>/seed-<s>/, D/manifest.json.
        seeds: replaces the file's seeds: a range 0-4 or a list 0,1,2.
        launcher: local (child processes here) or slurm (one sbatch array job).
        parallel: runs at once (local) or the array throttle (slurm); default: the file's parallel.
        dry_run: print every command (and the SLURM script) and change nothing.
        fit_args: extra fit flags (the words after --).

    Returns:
        The exit status: 0 when every run finished (or was submitted), 1 when any failed.
    """
    spec = load_sweep(sweep_file)
    check_loggers(spec.conditions, tuple(spec.fit_args) + tuple(fit_args))
    P = spec.parallel if parallel is None else parallel
    if P < 1:
        raise ConfigError(f"--parallel: must be >= 1, got {P}")
    runs = plan_runs(spec, Path(output_dir), parse_seeds(seeds, "--seeds") if seeds else None, tuple(fit_args))
    check_reuse(runs)
    if dry_run:
        return _dry_run(runs, launcher, P, Path(output_dir))
    check_writable(Path(output_dir), "--output_dir")
    todo = [r for r in runs if r.read_status()["status"] != FINISHED]
    if len(todo) < len(runs):
        _say(f"{len(runs) - len(todo)} of {len(runs)} run(s) already finished: skipped")

    def on_change() -> None:
        write_manifest(runs, Path(output_dir), spec)

    on_change()
    if not todo:
        return _report(runs)
    if launcher == "slurm":
        from hierlatent.sweep.local import prepare_corpora, threads_per_run
        from hierlatent.sweep.slurm import submit

        bad = prepare_corpora(todo, threads_per_run(1), _say)
        for run in todo:
            if run.key in bad:
                run.write_status(status="failed", error=bad[run.key])
        submit([r for r in todo if r.key not in bad], Path(output_dir), P, _say)
    else:
        from hierlatent.sweep.local import LocalLauncher

        try:
            LocalLauncher(P, on_change, _say).run(todo)
        except KeyboardInterrupt:
            on_change()
            _say("interrupted: the running fits were stopped; rerun the same command to resume them")
            return 130
    on_change()
    return _report(runs)


def _dry_run(runs, launcher: str, parallel: int, output_dir: Path) -> int:
    from hierlatent.sweep.plan import shared_corpora

    for cmd in shared_corpora(runs):
        print(shlex.join(["hierlatent"] + list(cmd[3:])))
    if launcher == "slurm":
        from hierlatent.sweep.slurm import TEMPLATE, sbatch_options

        print("sbatch " + " ".join(sbatch_options()) + f" {output_dir}/slurm/sweep.sbatch   # with:")
        print(TEMPLATE.format(last=len(runs) - 1, parallel=parallel, out=f"{output_dir}/slurm",
                              runs=f"{output_dir}/slurm/runs.txt", python=sys.executable))
        print(f"# {output_dir}/slurm/runs.txt, one task per line:")
    for run in runs:
        print(run.log_dir if launcher == "slurm" else run.shell())
        if launcher == "slurm":
            print(f"#   runs: {run.shell()}")
    return 0


def _report(runs) -> int:
    statuses = [r.read_status() for r in runs]
    failed = [(r, s) for r, s in zip(runs, statuses) if s["status"] == "failed"]
    for run, status in failed:
        _say(f"FAILED {run.key}: {status.get('error')}")
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    _say("; ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" (manifest: {runs[0].output_dir / 'manifest.json'})")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """``hierlatent sweep`` entry point: the flags are the signature of ``sweep``; words after ``--`` are fit flags.

    Args:
        argv: the arguments after ``sweep``.
    """
    from jsonargparse import ArgumentParser

    from hierlatent.cli_checks import parse_or_error

    argv = list(argv)
    fit_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, fit_args = argv[:i], argv[i + 1:]
    parser = ArgumentParser(prog="hierlatent sweep", description=sweep.__doc__.splitlines()[0],
                            exit_on_error=False, allow_abbrev=False)
    parser.add_argument("sweep_file", type=Path, help="the sweep YAML (conditions, seeds; see configs/sweeps/).")
    parser.add_function_arguments(sweep, skip={"fit_args", "sweep_file", "dry_run"})
    parser.add_argument("--dry_run", action="store_true", help="print every command (and the SLURM script); change nothing.")
    cfg = parse_or_error(parser, argv, "sweep")
    kwargs = {k: v for k, v in vars(parser.instantiate_classes(cfg)).items() if k != "config"}
    return sweep(**kwargs, fit_args=tuple(fit_args))
