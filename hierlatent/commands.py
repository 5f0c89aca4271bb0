"""The ``hierlatent`` console script's front door: subcommand table, top-level help and light dispatch.

One rule for subcommands, two kinds:

- **light** subcommands (``plot``, ``sweep``, ``compare``, ``verify``) neither train nor need Lightning's
  parser: each is a module with a typed ``main(argv) -> int`` listed in ``LIGHT_SUBCOMMANDS`` and is run
  from here, without importing torch or Lightning, in a fraction of a second (so are ``--help`` and an
  unknown subcommand);
- **Trainer** subcommands (``fit validate test predict generate probe-olmo``, ``SUBCOMMAND_HELP``'s other
  names) are ``hierlatent.trainer.HierlatentTrainer`` methods whose signatures (after ``self``; a
  hyphen in the name is an underscore in the method) are their CLI: ``hierlatent.cli.main`` (LightningCLI,
  imported only then) parses and runs them, the only place with its own plumbing being
  ``hierlatent._lightning_compat.SubcommandCLI``.

A new subcommand is one of these two; nothing is bound conditionally, and a failing import of
hierlatent's own code fails loudly.
"""

from __future__ import annotations

import sys

from hierlatent.errors import ConfigError, HierlatentError

DESCRIPTION = (
    "hierlatent: train small transformers from scratch on synthetic corpora with a known hierarchical latent"
    " structure (PCFG documents, n-gram controls, grammars), probe them for induction, Hydra, function-vector"
    " and syntax mechanisms during training, and draw the paper's figures."
)

#: subcommands that neither train nor need Lightning's parser: name -> module with ``main(argv) -> int``
LIGHT_SUBCOMMANDS = {
    "plot": "hierlatent.plot.cli",
    "sweep": "hierlatent.sweep.cli",
    "compare": "hierlatent.compare.cli",
    "verify": "hierlatent.corpora.verify",
}

#: one line per subcommand for ``hierlatent --help`` (tests check that every subcommand has one)
SUBCOMMAND_HELP = {
    "fit": "train a model on a corpus (generated or found in the cache), with checkpoints, HF exports and probes",
    "validate": "compute the validation loss of a model or checkpoint",
    "test": "compute the test loss of a model or checkpoint",
    "predict": "run the model's predict step over the data module",
    "generate": "generate the corpus a config needs (or find it in the cache) and print its path; no training",
    "probe-olmo": "run the probes over a series of OLMo (or any HF) checkpoints",
    "plot": "draw the paper's figures from fit runs and probe-olmo output",
    "sweep": "run many seeds per condition, each an ordinary fit in its own run directory",
    "compare": "compare the runs of a sweep: seed means and spreads per condition",
    "verify": "check a corpus's shards against the sizes and checksums in its meta.json",
}


def top_level_help() -> str:
    """The text of ``hierlatent --help``: the project description and one line per subcommand."""
    width = max(map(len, SUBCOMMAND_HELP))
    import textwrap

    lines = ["usage: hierlatent <subcommand> [options]", "", textwrap.fill(DESCRIPTION, 100), "", "subcommands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in SUBCOMMAND_HELP.items()]
    lines += ["", "Run 'hierlatent <subcommand> --help' for a subcommand's options (fit --help lists every config key)."]
    return "\n".join(lines)


def run_light(name: str, argv: list[str]) -> int:
    """Run a light subcommand's ``main(argv)``: its exit status.

    Args:
        name: a key of ``LIGHT_SUBCOMMANDS``.
        argv: the arguments after the subcommand.
    """
    import importlib

    return importlib.import_module(LIGHT_SUBCOMMANDS[name]).main(argv) or 0


def light_main(args: list[str]) -> int | None:
    """Answer ``args`` without Lightning if possible: the exit status, or None when LightningCLI must.

    Args:
        args: the arguments after the program name.
    """
    if not args or args[0] in ("-h", "--help"):
        print(top_level_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] in LIGHT_SUBCOMMANDS:
        return run_light(args[0], args[1:])
    if not args[0].startswith("-") and args[0] not in SUBCOMMAND_HELP:
        raise ConfigError(f"unknown subcommand {args[0]!r}; choose from {', '.join(SUBCOMMAND_HELP)} (see hierlatent --help)")
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``hierlatent``: light subcommands here, the rest through ``hierlatent.cli.main``.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        status = light_main(args)
    except HierlatentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if status is not None:
        sys.exit(status)
    from hierlatent.cli import main as lightning_main

    lightning_main(argv)


if __name__ == "__main__":
    main()
