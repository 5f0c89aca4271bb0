"""Progress over a known number of items for the commands that do not train: probe-olmo, sweep, compare.

One implementation of "done / total, elapsed, ETA" for all three. On a terminal `Progress` shows a tqdm
bar (Lightning's own bar library, already a dependency); when the stream is not a terminal (a log file,
CI, SLURM) it prints one line instead, at most every ``interval`` seconds and always for the first and the
last item, so a log shows how far a command got without a stream of carriage returns. `progress_line`
is the line itself and `timing` its "elapsed, ETA" part, for callers that keep their own clock or line.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def progress_line(label: str, done: int, total: int, unit: str, elapsed: float, note: str = "") -> str:
    """``<label>: <done>/<total> <unit> (<note>); elapsed <s> s, ETA <s> s`` (ETA from the mean time per item).

    Args:
        label: what is progressing, e.g. "compare" or "probe-olmo: rank 0".
        done: items finished.
        total: items in all.
        unit: the items' name, e.g. "revisions".
        elapsed: seconds since the first item started.
        note: the item just finished (omitted when empty).
    """
    detail = f" ({note})" if note else ""
    return f"{label}: {done}/{total} {unit}{detail}; {timing(done, total, elapsed)}"


def timing(done: int, total: int, elapsed: float) -> str:
    """``elapsed <s> s, ETA <s> s``: the ETA is the mean time per finished item times the items left.

    Args:
        done: items finished.
        total: items in all.
        elapsed: seconds so far.
    """
    eta = f"{elapsed / done * (total - done):.0f} s" if done else "unknown"
    return f"elapsed {elapsed:.0f} s, ETA {eta}"


class Progress:
    """Counts finished items: a tqdm bar on a terminal, a periodic `progress_line` otherwise."""

    def __init__(self, label: str, total: int, unit: str, interval: float = 30.0, stream: TextIO | None = None,
                 bar: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """
        Args:
            label: prefix of every line (and the bar's description).
            total: items expected.
            unit: the items' name, e.g. "runs".
            interval: least seconds between two lines when not on a terminal (0 = a line per item).
            stream: where to write (default: standard error).
            bar: force (True) or refuse (False) the tqdm bar; default: only on a terminal.
            clock: the time source in seconds (monotonic).
        """
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.done, self.start, self._last = 0, clock(), None
        use_bar = bar if bar is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        if use_bar and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit=f" {unit}", desc=label, file=self.stream, leave=True)

    def elapsed(self) -> float:
        """Seconds since the progress started."""
        return self.clock() - self.start

    def advance(self, note: str = "", n: int = 1) -> None:
        """``n`` more items are done (``note``: the last of them, shown beside the count)."""
        self.done += n
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
            return
        now = self.clock()
        due = self._last is None or self.done >= self.total or now - self._last >= self.interval
        if due:
            self._last = now
            print(progress_line(self.label, self.done, self.total, self.unit, now - self.start, note),
                  file=self.stream, flush=True)

    def write(self, text: str) -> None:
        """A line of its own that does not break the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Close the bar (lines need no closing)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
