"""``python -m hierlatent``: the ``hierlatent`` console script (``hierlatent.commands.main``) run as a module.

Sweeps and launch scripts start fits this way, not as ``python -m hierlatent.cli``: a spawn-started worker
(corpus generation, dataloaders) re-imports its parent's main module by name unless that name ends in
``.__main__``, and for ``hierlatent.cli`` that would cost every worker torch and Lightning for nothing.
"""

from hierlatent.commands import main

if __name__ == "__main__":
    main()
