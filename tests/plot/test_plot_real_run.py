"""The plot reader on a real Lightning run: a tiny LanguageModel trained a few steps with the project's logger.

This checks the tags, event-file layout and extra TensorBoard content (hparams session, custom-scalar
layout tensors) that the training code really writes, not just what the fixture builders imitate.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierlatent.plot import figures as F
from hierlatent.plot.cli import main
from hierlatent.plot.discover import load_sources

pytest.importorskip("hierlatent.module")
pytest.importorskip("hierlatent.trainer")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    import lightning as L
    from hltest import RandomTokens

    from hierlatent.data import CorpusDataModule, TokenWindows
    from hierlatent.module import LanguageModel
    from hierlatent.trainer import ResumableTensorBoardLogger

    tmp = tmp_path_factory.mktemp("realfit")
    L.seed_everything(0)
    gen = RandomTokens()
    dm = CorpusDataModule(gen, context_window=16, batch_size=4)
    train = np.tile(np.arange(7, dtype=np.uint16), 1000)
    corpus = type("C", (), {"reference_losses": {"exact": 0.0}, "tokenizer_dir": None, "path": tmp / "corpus"})()
    dm.attach(TokenWindows.from_arrays([train], 16), TokenWindows.from_arrays([train[:500]], 16), corpus)
    model = LanguageModel(vocab_size=dm.vocab_size, lr=3e-3, n_layers=2, d_model=32, n_heads=4, d_mlp=64, context_window=16)
    logger = ResumableTensorBoardLogger(save_dir=str(tmp / "runs"), name="ngram", version="version_0")
    trainer = L.Trainer(
        max_steps=12, logger=logger, log_every_n_steps=3, val_check_interval=6, limit_val_batches=1,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    trainer.fit(model, dm)
    log_dir = trainer.log_dir
    # what LightningCLI's SaveConfigCallback writes next to the events
    (tmp / "runs" / "ngram" / "version_0" / "config.yaml").write_text(
        "data:\n  generator:\n    class_path: hierlatent.corpora.ngram.NGramCorpus\n    init_args:\n      seed: 0\n"
    )
    return log_dir


def test_real_lightning_run_plots(real_run, tmp_path, capsys):
    [source] = load_sources([real_run], None, None)
    assert source.label == "N-gram"
    steps, losses = source.scalars["train/loss"]
    assert steps.tolist() == [2, 5, 8, 11] and np.isfinite(losses).all()
    assert source.reference_losses == {"exact": 0.0} and len(source.scalars["val/loss"][0]) >= 1
    fig, filled = F.fig_loss(F.panels([source]), F.Options())
    assert filled == 1
    assert main(["--runs", str(real_run), "--output_dir", str(tmp_path), "--formats", "png", "--dpi", "50"]) == 0
    err = capsys.readouterr().err
    assert "warning: no probe results in" in err and "warning: fig4_hydra not drawn" in err
    assert (tmp_path / "fig2_loss.png").is_file() and (tmp_path / "fig2_loss.csv").is_file()
    assert not (tmp_path / "fig4_hydra.png").exists()  # no run has Hydra results: no figure of empty panels
