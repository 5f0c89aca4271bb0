"""``hierlatent compare``: seed statistics and corrected tests between the conditions of a sweep.

``collect`` reads runs into metric tables, ``stats`` holds the statistics (scipy.stats for every test),
``report`` writes report.md / report.csv / summary.csv and the effects figure, ``cli`` is the command.
"""
