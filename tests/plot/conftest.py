"""Fixtures of the plot tests: the real quickstart run, made once per session through the console script.

``configs/quickstart.yaml`` is run as the README says (``hierlatent fit --config configs/quickstart.yaml``)
and cut down on the command line only: 4 steps over a 40-document corpus instead of one epoch over 8,000,
a train/loss point every step. Everything else is the quickstart's own: the model, the probes, a
checkpoint with its HF export and probe JSON every 10% of the steps (here every step), validation at
those steps. Then every figure is drawn from it by ``hierlatent plot``.
"""

from __future__ import annotations

import pytest

from hltest import TESTS_DIR, run_hierlatent

QUICKSTART_CUTS = ("--trainer.max_steps", "4", "--trainer.log_every_n_steps", "1",
                   "--data.generator.init_args.n_documents", "40", "--data.generator.init_args.n_test_documents", "20")


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory) -> dict:
    """The cut-down quickstart run and its figures: {"run", "figures", "fit", "plot"} (log dir, figure dir,
    and the two finished processes with their output)."""
    root = tmp_path_factory.mktemp("quickstart")
    config = TESTS_DIR.parent / "configs" / "quickstart.yaml"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIERLATENT_CACHE", str(root / "cache"))
        fit = run_hierlatent(["fit", "--config", str(config), *QUICKSTART_CUTS,
                              "--trainer.logger.init_args.save_dir", str(root / "runs")], cwd=root)
        run = root / "runs" / "quickstart" / "run"
        plot = run_hierlatent(["plot", "--runs", str(run), "--output_dir", str(root / "figures"),
                               "--formats", "png", "--dpi", "60"], cwd=root)
    return {"run": run, "figures": root / "figures", "fit": fit, "plot": plot}
