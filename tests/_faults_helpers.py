"""Helpers for the fault-injection tests: a corpus whose train shards block, and process-tree checks.

``SlowShards`` is importable by ``class_path`` (tests/ is on ``PYTHONPATH`` for the console script) and by
spawned generation workers. Each train shard first touches ``<$HL_FAULT_MARKS>/<index>.started`` and then
sleeps ``block_s`` seconds, so a test can wait until every worker is busy and then kill the parent.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil

from hltest import TESTS_DIR, RandomTokens


class SlowShards(RandomTokens):
    """RandomTokens with 4 train shards, each announcing itself and then blocking ``block_s`` seconds."""

    name = "slow-shards"

    def __init__(self, seed: int = 0, block_s: float = 120.0) -> None:
        """
        Args:
            seed: master seed.
            block_s: seconds each train shard sleeps before it is returned.
        """
        super().__init__(seed=seed, train_tokens=4000, test_tokens=4000)
        self.block_s = block_s

    def shard_counts(self) -> dict[str, int]:
        return {"train": 4, "test": 1}

    def generate_shard(self, split: str, index: int, context: object = None) -> np.ndarray:
        if split == "train":
            marks = Path(os.environ["HL_FAULT_MARKS"])
            (marks / f"{index}.started").write_text(str(os.getpid()))
            time.sleep(self.block_s)
        tokens = super().generate_shard(split, index, context)  # expected_tokens(split) = 4000 tokens
        return tokens[:1000] if split == "train" else tokens  # 4 train shards of 1000


def wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    """Poll ``predicate()`` every 0.1 s until true; fail naming ``what`` after ``timeout`` s or if ``proc`` ends."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``procs`` still running (zombies count as gone: they hold no memory and write nothing)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def kill_and_check_orphans(proc, grace: float = 10.0) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """SIGKILL ``proc`` (a ``Popen``) and reap it; return (its descendants at that moment, those still alive
    ``grace`` seconds later). Survivors are killed afterwards, so a failing test leaves nothing behind."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + grace
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = alive(children)
    for p in survivors:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    return children, survivors


def kill_when_busy_and_check(argv: list[str], tmp_path: Path, what: str, timeout: float = 240) -> None:
    """Start ``argv``, wait until two of its children have touched ``$HL_FAULT_MARKS/*.started``, SIGKILL it,
    and assert that none of its descendants outlives it by more than a few seconds (tests/ and tests/corpora
    are on ``PYTHONPATH``)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    path = [str(TESTS_DIR), str(TESTS_DIR / "corpora"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "HL_FAULT_MARKS": str(marks), "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(list(marks.glob("*.started"))) >= 2, timeout, what, proc)
    finally:
        children, survivors = kill_and_check_orphans(proc)
    assert len(children) >= 2
    assert not survivors, f"orphans after the parent was killed: {[(p.pid, p.name()) for p in survivors]}"
