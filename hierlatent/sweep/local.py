"""The local launcher: up to P ``hierlatent fit`` processes at once, the cores split between them.

Each child gets ``OMP_NUM_THREADS = cores // P`` (at least 1): on a 2-core machine two fits with two
spinning intra-op threads each were measured 15-20x slower than with one each. Children die with the
sweep (``die_with_parent``), so a killed sweep leaves no orphan fits; a rerun resumes them. Corpora are
built first, one ``hierlatent generate`` per recipe that several runs share, one at a time, so concurrent
fits only ever find a shared corpus in the cache and never race on building it.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from hierlatent._proc import die_with_parent
from hierlatent.sweep.plan import FINISHED, Run, final_losses, shared_corpora


def threads_per_run(parallel: int) -> int:
    """Intra-op threads for each of ``parallel`` concurrent runs on this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, parallel))


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _spawn(cmd: list[str], log_file: Path, threads: int) -> subprocess.Popen:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_env(threads), preexec_fn=die_with_parent)


def error_tail(log_file: Path, lines: int = 3) -> str:
    """What a failed run said last: its ``error:`` line if it printed one, else its last lines."""
    try:
        text = log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    errors = [line for line in text if line.startswith("error:")]
    return errors[-1] if errors else " | ".join(text[-lines:])


def prepare_corpora(runs: list[Run], threads: int, say) -> dict[str, str]:
    """Build each corpus several runs share once (``generate``), one at a time; run key -> error for runs that failed."""
    failed: dict[str, str] = {}
    for cmd, members in shared_corpora(runs).items():
        say(f"corpus for {', '.join(r.key for r in members)}: hierlatent generate ...")
        code = _spawn(list(cmd), members[0].log_file, threads).wait()
        if code != 0:
            error = f"corpus generation failed (exit {code}): {error_tail(members[0].log_file)}"
            failed.update({r.key: error for r in members})
    return failed


class LocalLauncher:
    """Runs fits as child processes, at most ``parallel`` at once, and records each one's status."""

    def __init__(self, parallel: int, on_change, say) -> None:
        """
        Args:
            parallel: runs at once.
            on_change: called after every change of a run's status (rewrites the manifest).
            say: progress printer (one line per event).
        """
        self.parallel, self.on_change, self.say = parallel, on_change, say
        self.threads = threads_per_run(parallel)
        self._unrun = 0  # runs that failed before starting (corpus generation): not part of the time per run

    def _finish(self, run: Run, proc: subprocess.Popen, started: float) -> bool:
        code, wall = proc.wait(), time.time() - started
        losses = final_losses(run.log_dir) if code == 0 else {}
        if code == 0:
            run.write_status(status=FINISHED, exit_code=0, wall_seconds=round(wall, 1), **losses)
        else:
            run.write_status(status="failed", exit_code=code, wall_seconds=round(wall, 1), error=error_tail(run.log_file))
        self.on_change()
        return code == 0

    def run(self, runs: list[Run]) -> int:
        """Run every run (skipping none: the caller filters finished ones); the number that failed."""
        self.say(f"{len(runs)} run(s), {self.parallel} at a time, {self.threads} thread(s) each")
        bad = prepare_corpora(runs, self.threads * self.parallel, self.say)
        for run in runs:
            if run.key in bad:
                run.write_status(status="failed", exit_code=None, error=bad[run.key])
        queue = [r for r in runs if r.key not in bad]
        active: dict[str, tuple[Run, subprocess.Popen, float]] = {}
        failures, done, t0 = len(bad), len(bad), time.time()
        self._unrun = len(bad)
        self.on_change()
        try:
            while queue or active:
                while queue and len(active) < self.parallel:
                    run = queue.pop(0)
                    run.write_status(status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"))
                    active[run.key] = (run, _spawn(run.fit_command(), run.log_file, self.threads), time.time())
                    self.on_change()
                    self.say(f"started {run.key} (log: {run.log_file})")
                for key, (run, proc, started) in list(active.items()):
                    if proc.poll() is None:
                        continue
                    del active[key]
                    ok = self._finish(run, proc, started)
                    failures += not ok
                    done += 1
                    self.say(self._progress(run, ok, done, len(runs), t0))
                time.sleep(0.5)
        finally:
            for run, proc, _ in active.values():  # interrupted: stop the children; a rerun resumes them
                proc.kill()
                proc.wait()
        return failures

    def _progress(self, run: Run, ok: bool, done: int, total: int, t0: float) -> str:
        """One line per finished run, whatever the stream: a run takes minutes, so each is worth a line."""
        from hierlatent.progress import timing

        status = run.read_status()
        what = f"val/loss {status.get('val_loss'):.4f}" if ok and status.get("val_loss") is not None else (
            "finished" if ok else f"FAILED: {status.get('error')}")
        return f"[{done}/{total}] {run.key} {what} in {status.get('wall_seconds', 0):.0f} s; {timing(done - self._unrun, total - self._unrun, time.time() - t0)}"
