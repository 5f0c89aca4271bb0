"""One reading of revision names for ``probe-olmo`` discovery and ``plot`` (``hierlatent.revisions``)."""

from hierlatent.olmo import checkpoints
from hierlatent.plot import sources
from hierlatent.revisions import parse_revision


def test_one_parse_revision_everywhere():
    assert checkpoints.parse_revision is parse_revision and sources.parse_revision is parse_revision


def test_fit_export_and_olmo_names():
    assert parse_revision("step-1200") == (1200, None)  # a fit export (plot used to reject it)
    assert parse_revision("step20000-tokens84B") == (20000, 84 * 10**9)
    assert parse_revision("main") is None  # probe-olmo used to return (None, None)
