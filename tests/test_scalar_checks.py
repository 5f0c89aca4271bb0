"""``hierlatent.checks``: the one family of scalar checks; each message names the field and says the rule."""

from __future__ import annotations

import numpy as np
import pytest

from hierlatent.checks import check_fraction_or_count, check_int
from hierlatent.errors import ConfigError


def test_check_int_says_what_the_bound_means():
    with pytest.raises(ConfigError, match=r"^--trainer\.max_steps: must be an integer >= -1 \(-1 = no step limit\), "
                                          r"got -5$"):
        check_int("--trainer.max_steps", -5, -1, "-1 = no step limit")
    with pytest.raises(ConfigError, match=r"^n: must be an integer >= 1, got True$"):
        check_int("n", True)
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int


@pytest.mark.parametrize("value", [0, 7, 0.0, 0.25, 1.0])
def test_fraction_or_count_accepts(value):
    assert check_fraction_or_count("--trainer.limit_val_batches", value) == value


@pytest.mark.parametrize("value,message", [
    (5.0, r"a float is a fraction of the epoch in \[0, 1\], got 5\.0; for every 5 batches give the integer 5$"),
    (1.5, r"a float is a fraction of the epoch in \[0, 1\], got 1\.5$"),
    (-0.5, r"a float is a fraction of the epoch in \[0, 1\], got -0\.5$"),
    (float("nan"), r"a float is a fraction of the epoch in \[0, 1\], got nan$"),
    (-2, r"must be an integer >= 0, got -2$"),
    (True, r"must be an integer >= 0, got True$"),
])
def test_fraction_or_count_refuses_naming_the_flag(value, message):
    with pytest.raises(ConfigError, match=r"^--trainer\.val_check_interval: " + message):
        check_fraction_or_count("--trainer.val_check_interval", value)
