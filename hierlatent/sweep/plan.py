"""From a sweep spec to runs: each (condition, seed) is one ``hierlatent fit`` in ``D/<condition>/seed-<s>/``.

Every run keeps its own status file ``D/<condition>/seed-<s>/sweep-run.json`` (written atomically by
whoever runs it: the local launcher, or the SLURM array task through ``hierlatent.sweep.task``), so
concurrent array tasks never write one shared file. ``D/manifest.json`` is assembled from those files by
the sweep command (and rewritten atomically after every change of a run's state).

Run states: ``pending`` (never started), ``running`` (started; if no process holds it any more it was
killed and is resumed with ``--ckpt_path last``), ``finished`` (exit 0), ``failed`` (non-zero exit; the
error is the log's last lines), ``submitted`` (handed to SLURM).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hierlatent.errors import ConfigError
from hierlatent.io import atomic_write_json
from hierlatent.sweep.spec import Condition, SweepSpec

STATUS_FILE = "sweep-run.json"
FINISHED = "finished"


def hierlatent_command() -> list[str]:
    """How child processes call hierlatent: this interpreter with ``-m hierlatent`` (no PATH lookup).

    ``hierlatent`` and not ``hierlatent.cli``: the fits' spawned workers skip a ``*.__main__`` main module
    (see ``hierlatent/__main__.py``) instead of importing torch and Lightning again.
    """
    return [sys.executable, "-m", "hierlatent"]


@dataclass(frozen=True)
class Run:
    """One (condition, seed) of a sweep."""

    condition: Condition
    seed: int
    output_dir: Path
    seed_corpus: bool
    extra: tuple[str, ...]  # fit flags appended to every command (the file's fit_args, then the CLI's)

    @property
    def log_dir(self) -> Path:
        return self.output_dir / self.condition.name / f"seed-{self.seed}"

    @property
    def key(self) -> str:
        return f"{self.condition.name}/seed-{self.seed}"

    @property
    def log_file(self) -> Path:
        return self.output_dir / "logs" / f"{self.condition.name}-seed-{self.seed}.log"

    def _corpus_flags(self) -> list[str]:
        flags = self.condition.fit_flags()
        if self.seed_corpus:
            flags.append(f"--data.generator.init_args.seed={self.seed}")
        return flags

    def fit_args(self) -> list[str]:
        """The run's fit arguments (``--ckpt_path last``: a rerun resumes, a first launch starts afresh)."""
        logger = [
            f"--trainer.logger.init_args.save_dir={self.output_dir}",
            f"--trainer.logger.init_args.name={self.condition.name}",
            f"--trainer.logger.init_args.version=seed-{self.seed}",
        ]
        return (["fit"] + self._corpus_flags() + [f"--seed_everything={self.seed}"] + logger
                + ["--ckpt_path", "last"] + list(self.extra))

    def fit_command(self) -> list[str]:
        """The command that runs the fit (this interpreter, so no PATH lookup)."""
        return hierlatent_command() + self.fit_args()

    def generate_command(self) -> list[str]:
        """Build (or find) this run's corpus alone, before any fit: runs sharing a recipe share this command.

        The seed is not in it (it does not change the corpus unless ``seed_corpus``), so identical recipes
        dedupe to one command.
        """
        return hierlatent_command() + ["generate"] + self._corpus_flags() + list(self.extra)

    def shell(self) -> str:
        """The fit command as a user would type it (recorded in the manifest)."""
        return shlex.join(["hierlatent"] + self.fit_args())

    def read_status(self) -> dict[str, Any]:
        """The run's status record (``pending`` when it has none or the file is unreadable)."""
        try:
            status = json.loads((self.log_dir / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return {"status": "pending"}
        return status if isinstance(status, dict) and "status" in status else {"status": "pending"}

    def write_status(self, **fields: Any) -> dict[str, Any]:
        record = {"condition": self.condition.name, "seed": self.seed, "log_dir": str(self.log_dir),
                  "command": self.shell(), **fields}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.log_dir / STATUS_FILE, record)
        return record


def plan_runs(spec: SweepSpec, output_dir: Path, seeds: tuple[int, ...] | None = None,
              extra_fit_args: tuple[str, ...] = ()) -> list[Run]:
    """Every (condition, seed) of the sweep, seed-major: a sweep stopped part-way leaves every condition with
    the same seeds done (balanced, and paired where the design pairs them).

    Args:
        spec: the checked sweep file.
        output_dir: the sweep directory D.
        seeds: replaces the sweep file's seeds (``--seeds``).
        extra_fit_args: fit flags from the command line (after ``--``), appended after the file's.
    """
    fit_args = tuple(spec.fit_args) + tuple(extra_fit_args)
    return [Run(c, s, Path(output_dir), spec.seed_corpus, fit_args)
            for s in (seeds or spec.seeds) for c in spec.conditions]


def shared_corpora(runs: list[Run]) -> dict[tuple[str, ...], list[Run]]:
    """``generate`` commands of the corpus recipes that two or more runs share -> those runs.

    Only these are built before the fits (once each); a corpus one run alone uses (``seed_corpus: true``)
    is built by that run's own fit, where nothing can race on it.
    """
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(run.generate_command()), []).append(run)
    return {cmd: members for cmd, members in groups.items() if len(members) > 1}


def check_reuse(runs: list[Run]) -> None:
    """Refuse to mix: a finished run whose recorded command differs from the one this sweep would run."""
    for run in runs:
        status = run.read_status()
        if status["status"] == FINISHED and status.get("command") != run.shell():
            raise ConfigError(
                f"--output_dir: {run.log_dir} holds a finished run of another command ({status.get('command')});"
                " use a new --output_dir for a changed sweep"
            )


def final_losses(log_dir: Path) -> dict[str, float | None]:
    """The last logged ``train/loss`` and ``val/loss`` of a run (None where absent)."""
    from hierlatent.events import EVENT_GLOB, read_scalars

    files = sorted(log_dir.glob(EVENT_GLOB))
    scalars = read_scalars(files) if files else {}
    out: dict[str, float | None] = {}
    for tag, key in (("train/loss", "train_loss"), ("val/loss", "val_loss")):
        if tag in scalars:
            value = float(scalars[tag][1][-1])
            out[key] = value if math.isfinite(value) else None
        else:
            out[key] = None
    return out


def write_manifest(runs: list[Run], output_dir: Path, spec: SweepSpec) -> Path:
    """Assemble ``D/manifest.json`` from the runs' status files (atomic)."""
    records = [{"condition": r.condition.name, "seed": r.seed, "log_dir": str(r.log_dir), "command": r.shell(),
                **{k: v for k, v in r.read_status().items() if k not in ("condition", "seed", "log_dir", "command")}}
               for r in runs]
    manifest = {
        "format": 1, "sweep_file": str(spec.path), "paired": spec.paired, "seed_corpus": spec.seed_corpus,
        "conditions": {c.name: {"configs": [str(p) for p in c.configs], "overrides": c.overrides} for c in spec.conditions},
        "runs": records,
    }
    path = Path(output_dir) / "manifest.json"
    atomic_write_json(path, manifest)
    return path
