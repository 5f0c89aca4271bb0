"""``hierlatent plot``: the paper's figures from fit runs and probe-olmo output.

``main(argv)`` is called by the top-level CLI with the arguments after ``plot``; the flags are built by
jsonargparse from the signature and docstring of `plot`, so ``--help`` and ``--config plot.yaml`` work
like the rest of the app. List flags also take plain values: ``--runs a b`` and ``--runs a --runs b``
both mean ``--runs '[a, b]'``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from hierlatent.errors import ConfigError, HierlatentError
from hierlatent.io import check_writable

FIGURES = ("fig2_loss", "fig3_induction", "fig3b_standard_induction", "fig4_hydra", "fig4b_hydra_k2", "fig5a_function_vectors")
_LIST_FLAGS = ("--runs", "--formats", "--figures")


def plot(
    runs: list[Path] = [],
    sweep: Path | None = None,
    olmo: Path | None = None,
    olmo_loss_csv: Path | None = None,
    output_dir: Path = Path("figures"),
    formats: list[str] = ["png", "pdf"],
    dpi: int = 200,
    figures: list[str] | None = None,
    width: float = 7.0,
    max_columns: int = 3,
    xscale: Literal["auto", "linear", "log"] = "auto",
    smooth: float = 0.0,
    paper_panels: bool = False,
) -> list[Path]:
    """Draw the paper's figures (loss, k-order and standard induction, Hydra, function vectors) as PNG/PDF,
    each with a tidy CSV of what it plots. Panels are ordered N-gram | PCFG | OLMo | others, then the sweep's
    conditions (seed mean and 95% band). List flags take several values: --runs a b, --formats png pdf.

    Args:
        runs: fit log dirs (TensorBoardLogger version_N dirs, or parents holding one or several runs).
        sweep: sweep output dir D (D/<condition>/seed-<s>/ fit runs): one panel per condition, seed mean and 95% CI.
        olmo: probe-olmo output dir (<revision>/probes.json, manifest.json, tensorboard/).
        olmo_loss_csv: CSV with columns step,loss for the OLMo loss panel.
        output_dir: directory the figure files are written to.
        formats: file formats to write, e.g. png, pdf, svg.
        dpi: resolution of raster formats.
        figures: figures to draw (default: all that apply): fig2_loss, fig3_induction, fig3b_standard_induction, fig4_hydra, fig4b_hydra_k2, fig5a_function_vectors.
        width: figure width in inches (7.0 double column, 3.4 single column).
        max_columns: panels per row before wrapping to a new row.
        xscale: step axis scale; auto = log when the steps span two decades from a nonzero start (OLMo).
        smooth: TensorBoard-style EMA weight for the train loss in [0, 1); 0 = raw.
        paper_panels: also draw placeholder panels for the N-gram, PCFG and OLMo runs that were not given.

    Returns:
        The paths of the files written.
    """
    _validate(formats, dpi, figures, width, max_columns, smooth)
    check_writable(Path(output_dir), "--output_dir")
    from hierlatent.plot.discover import load_sources, load_sweep

    if not runs and olmo is None and sweep is None:
        raise ConfigError("--runs, --olmo and --sweep are all empty: give a fit run directory, a probe-olmo output directory or a sweep directory")
    groups = load_sweep(Path(sweep)) if sweep is not None else []
    sources = load_sources([Path(r) for r in runs], olmo and Path(olmo), olmo_loss_csv and Path(olmo_loss_csv)) if runs or olmo else []
    for s in sources + [r for _, g in groups for r in g]:
        for note in s.notes:
            print(f"warning: {note}", file=sys.stderr)
        if not s.probes:
            print(f"warning: no probe results in {s.path} (expected probes/step-<N>.json or <revision>/probes.json); its probe panels are empty", file=sys.stderr)
    written = []
    for name, fig in _draw(sources, groups, figures, width, max_columns, xscale, smooth, paper_panels):
        from hierlatent.plot.style import save_figure
        from hierlatent.plot.tidy import write_csv

        written += save_figure(fig, Path(output_dir), name, formats, dpi)
        written.append(write_csv(fig.tidy, Path(output_dir) / f"{name}.csv"))
    for path in written:
        print(path)
    return written


def _validate(formats: list[str], dpi: int, figures: list[str] | None, width: float, max_columns: int, smooth: float) -> None:
    """Check every option before any event file is read."""
    from matplotlib.figure import Figure

    supported = Figure().canvas.get_supported_filetypes()
    if not formats:
        raise ConfigError("--formats: empty; give at least one of " + ", ".join(sorted(supported)))
    for fmt in formats:
        if fmt not in supported:
            raise ConfigError(f"--formats: unknown format {fmt!r}; supported: {', '.join(sorted(supported))}")
    for name in figures or []:
        if name not in FIGURES:
            raise ConfigError(f"--figures: unknown figure {name!r}; choose from {', '.join(FIGURES)}")
    if dpi <= 0:
        raise ConfigError(f"--dpi: must be positive, got {dpi}")
    if not 0 < width <= 40:
        raise ConfigError(f"--width: figure width in inches must be in (0, 40], got {width}")
    if max_columns < 1:
        raise ConfigError(f"--max_columns: must be >= 1, got {max_columns}")
    if not 0 <= smooth < 1:
        raise ConfigError(f"--smooth: EMA weight must be in [0, 1), got {smooth}")


def _draw(sources, groups, figures, width, max_columns, xscale, smooth, paper_panels):
    """Yield (name, Figure) for each requested figure, under the paper style; by default a figure that no
    run has data for is not drawn (a warning says so)."""
    from hierlatent.plot import figures as F
    from hierlatent.plot.sources import PAPER_ORDER
    from hierlatent.plot.style import paper_style

    opts = F.Options(width=width, max_columns=max_columns, xscale=xscale, smooth=smooth)
    slots = PAPER_ORDER if paper_panels else ()
    every = sources + [r for _, g in groups for r in g]
    has = {
        "fig2_loss": lambda s: bool(F.loss_curves(s)),
        "fig3_induction": lambda s: len(F.vector_series(s, ("induction", "k_order"))[0]) > 0,
        "fig3b_standard_induction": lambda s: any(len(F.scalar_series(s, ("induction", k))[0]) for k in ("standard", "duplicate", "previous")),
        "fig4_hydra": F.has_hydra,
        "fig4b_hydra_k2": lambda s: F.has_hydra_k(s, 2),
        "fig5a_function_vectors": F.has_function_vectors,
    }
    wanted = [f for f in FIGURES if (f in figures if figures else any(has[f](s) for s in every))]
    for name in sorted(set(FIGURES) - set(wanted) - set(figures or [])):
        print(f"warning: {name} not drawn: no given run has its data", file=sys.stderr)
    fv_sources = [s for s in sources if F.has_function_vectors(s) or (paper_panels and s.label == "PCFG")]
    fv_groups = [(t, g) for t, g in groups if any(F.has_function_vectors(r) for r in g)]
    all_panels = F.panels(sources, slots, groups)
    makers = {
        "fig2_loss": lambda: F.fig_loss(all_panels, opts),
        "fig3_induction": lambda: F.fig_k_order(all_panels, opts),
        "fig3b_standard_induction": lambda: F.fig_standard_induction(all_panels, opts),
        "fig4_hydra": lambda: F.fig_hydra(all_panels, opts, k=1),
        "fig4b_hydra_k2": lambda: F.fig_hydra(all_panels, opts, k=2),
        "fig5a_function_vectors": lambda: F.fig_function_vectors(
            F.panels(fv_sources, ("PCFG",) if paper_panels else (), fv_groups) or [F.Panel("function vectors", [], "no function-vector results\nin the given runs")], opts),
    }
    with paper_style():
        for name in wanted:
            fig, _ = makers[name]()
            yield name, fig


def _expand_list_flags(argv: list[str]) -> list[str]:
    """``--runs a b --runs c`` -> ``--runs '["a", "b", "c"]'`` (jsonargparse wants one list value)."""
    from hierlatent.cli_checks import expand_list_flags

    return expand_list_flags(argv, _LIST_FLAGS)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``hierlatent plot``: parse ``argv`` (without "plot"), draw, return the exit status.

    Args:
        argv: command-line arguments after ``plot``; None reads ``sys.argv[1:]``.
    """
    from hierlatent.cli_checks import check_config_files, parse_or_error

    args = _expand_list_flags(list(sys.argv[1:] if argv is None else argv))
    try:
        check_config_files(args)
        parser = _parser()
        cfg = parse_or_error(parser, args, "plot")  # one line naming the flag, not jsonargparse's usage dump
        kwargs = {k: v for k, v in vars(parser.instantiate_classes(cfg)).items() if k in _PLOT_ARGS}
        plot(**kwargs)
    except SystemExit as exc:  # --help, --print_config (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except HierlatentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


_PLOT_ARGS = plot.__code__.co_varnames[: plot.__code__.co_argcount]
_METAVARS = {"--runs": "PATH [PATH ...]", "--formats": "FORMAT [FORMAT ...]", "--figures": "NAME [NAME ...]"}


def _parser():
    """The jsonargparse parser of `plot` (no abbreviations, errors raised) with space-separated list metavars."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="hierlatent plot", description=plot.__doc__.split("\n\n")[0],
                            exit_on_error=False, allow_abbrev=False)
    parser.add_argument("--config", action="config", help="a YAML file of these options.")
    parser.add_function_arguments(plot, as_positional=False)
    for action in parser._actions:
        flags = [o for o in action.option_strings if o in _METAVARS]
        if flags:
            action.metavar = _METAVARS[flags[0]]
    return parser


if __name__ == "__main__":
    sys.exit(main())
