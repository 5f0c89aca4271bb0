"""``hierlatent sweep``: many seeds per condition, each an ordinary ``hierlatent fit`` in its own run directory.

``spec`` reads and checks the sweep file, ``plan`` turns it into runs (commands, directories, the per-run
status files), ``local`` and ``slurm`` launch them, ``cli`` is the command. ``hierlatent compare``
(``hierlatent.compare``) reads the result.
"""
