"""One sweep run as a job step: ``python -m hierlatent.sweep.task <run log dir>`` (what a SLURM array task runs).

It reads the command from the run's ``sweep-run.json``, skips a finished run, records ``running``, runs
the fit (``--ckpt_path last``: a requeued task resumes from its last checkpoint) and records the outcome.
Each task writes only its own status file, so the array's tasks never contend for one file.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hierlatent.sweep.plan import FINISHED, STATUS_FILE, final_losses, hierlatent_command


def run_task(log_dir: Path) -> int:
    """Run the fit recorded in ``log_dir/sweep-run.json``; its exit status.

    Args:
        log_dir: the run's directory ``D/<condition>/seed-<s>``.
    """
    from hierlatent.io import atomic_write_json

    path = Path(log_dir) / STATUS_FILE
    record = json.loads(path.read_text())
    if record.get("status") == FINISHED:
        print(f"{log_dir}: already finished")
        return 0
    started = time.time()
    atomic_write_json(path, {**record, "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    words = shlex.split(record["command"])  # "hierlatent fit ...": run it with this interpreter
    code = subprocess.call(hierlatent_command() + words[1:])
    wall = round(time.time() - started, 1)
    if code == 0:
        record.update(status=FINISHED, exit_code=0, wall_seconds=wall, **final_losses(Path(log_dir)))
    else:
        record.update(status="failed", exit_code=code, wall_seconds=wall, error=f"fit exited {code}; see the job log")
    atomic_write_json(path, record)
    return code


if __name__ == "__main__":
    sys.exit(run_task(Path(sys.argv[1])))
