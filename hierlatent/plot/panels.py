"""Panels shared by every figure: `Options`, `Panel` (one run, or a sweep condition's seeds) and their order.

A panel holds the runs it averages: one for a single run (``--runs``), the seeds of one condition for a
sweep (``--sweep``). A panel without runs is a placeholder for a paper slot that was not given; those are
drawn only with ``--paper_panels true``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from hierlatent.plot.sources import Source
from hierlatent.plot.style import empty_panel

UNDEFINED_GREY = "0.88"


@dataclass
class Options:
    """Layout options shared by all figures (see `hierlatent.plot.cli.plot` for their meaning)."""

    width: float = 7.0
    max_columns: int = 3
    xscale: str = "auto"
    smooth: float = 0.0


@dataclass
class Panel:
    """One panel: its title and runs (several = seeds of a sweep condition), or the placeholder message.

    Args:
        title: panel title.
        runs: the runs averaged in this panel; empty for a placeholder.
        missing: the placeholder's message.
    """

    title: str
    runs: list[Source] = field(default_factory=list)
    missing: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.runs, Source):  # Panel(title, source) as before sweeps existed
            self.runs = [self.runs]
        elif self.runs is None:
            self.runs = []

    @property
    def source(self) -> Source | None:
        """The first run (None for a placeholder)."""
        return self.runs[0] if self.runs else None

    @property
    def seeds(self) -> int:
        """Number of runs behind the panel."""
        return len(self.runs)


def panels(sources: list[Source], paper_slots: tuple[str, ...] = (), groups: list[tuple[str, list[Source]]] = ()) -> list[Panel]:
    """Panels in paper order: each slot label gets its sources or a placeholder, then the rest, then groups.

    Args:
        sources: single runs, any order.
        paper_slots: labels that always get a panel ("no <label> run given" when absent).
        groups: (title, seed runs) of the sweep conditions, in their order.
    """
    out = []
    for label in paper_slots:
        mine = [s for s in sources if s.label == label]
        out += [Panel(s.title, [s]) for s in mine] or [Panel(label, [], f"no {label} run given")]
    out += [Panel(s.title, [s]) for s in sources if s.label not in paper_slots]
    out += [Panel(title, list(runs)) for title, runs in groups]
    return out


def ylabel(ax, text: str) -> None:
    """Y label on every panel: a reviewer reads each panel on its own."""
    ax.set_ylabel(text)


def no_data(ax, panel: Panel, what: str) -> None:
    """Label a panel that has nothing to show: placeholder, run without probes, or without this probe."""
    if panel.source is None:
        empty_panel(ax, panel.title, panel.missing)
    elif not any(r.probes for r in panel.runs):
        empty_panel(ax, panel.title, f"no probe results in\n{panel.source.path}")
    else:
        empty_panel(ax, panel.title, f"no {what} results in\n{panel.source.path}")


def caption(fig, text: str) -> None:
    """A caption under the figure, wrapped to the figure's own width (a figure narrower than ``--width``,
    e.g. one panel, must not get a caption that sticks out); kept in ``fig.caption`` for tests and CSV readers.

    Args:
        fig: the figure.
        text: caption text.
    """
    chars = max(40, int(fig.get_figwidth() * 72 / 3.7))  # ~3.6 pt per character at 6.5 pt, and a margin
    fig.caption = text
    fig.text(0.0, 0.0, textwrap.fill(text, chars), ha="left", va="top", fontsize=6.5, color="0.2")


def band_title(panel: Panel) -> str:
    """Panel title, with the seed count for a sweep condition."""
    return panel.title if panel.seeds < 2 else f"{panel.title} ({panel.seeds} seeds)"


def undefined_legend(fig, entries: list[tuple[dict, str]]) -> None:
    """Figure legend of patch styles (grey undefined cells, hatched CI-contains-0 cells) below the panels.

    Args:
        fig: the figure.
        entries: (Patch keyword arguments, label) per entry.
    """
    from matplotlib.patches import Patch

    if entries:
        handles = [Patch(label=label, **style) for style, label in entries]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), frameon=False)  # the caption is below
