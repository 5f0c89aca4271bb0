"""A real tiny ``hierlatent fit`` through the console script: corpus, checkpoints, HF exports, TensorBoard."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from hltest import run_hierlatent, scalars, tiny_fit_config


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    cache = root / "cache"
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_fit_config(checkpoint={"every_n_train_steps": None, "every_fraction": 0.5})))
    out = run_hierlatent(["fit", "--config", str(cfg)], cwd=root, env={"HIERLATENT_CACHE": str(cache)})
    return root, cache, cfg, out


def test_fit_writes_corpus_checkpoints_and_logs(fitted):
    root, cache, _, _ = fitted
    corpora = list((cache / "corpora").iterdir())
    assert len(corpora) == 1 and (corpora[0] / "meta.json").is_file()
    run = root / "runs" / "hierlatent" / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "step=12.ckpt", "step=6.ckpt"]
    assert (run / "config.yaml").is_file()
    s = scalars(run)
    assert [st for st, _ in s["train/loss"]] == list(range(12))
    assert len(s["val/loss"]) == 3 and "reference/uniform" in s
    assert dict(s["train/tokens_seen"])[11] == 12 * 4 * 16


def test_hf_export_opens_with_auto_classes(fitted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = fitted[0]
    run = root / "runs" / "hierlatent" / "run"
    assert sorted(p.name for p in (run / "hf").iterdir()) == ["step-12", "step-6"]
    export = run / "hf" / "step-12"
    model = AutoModelForCausalLM.from_pretrained(export)
    tok = AutoTokenizer.from_pretrained(export)
    ids = tok("t1 t2 t3", return_tensors="pt")["input_ids"]
    assert ids[0, -3:].tolist() == [1, 2, 3]
    ckpt = torch.load(run / "checkpoints" / "step=12.ckpt", map_location="cpu", weights_only=True)
    sd = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    assert torch.equal(model.state_dict()["lm_head.weight"], sd["lm_head.weight"])
    record = json.loads((export / "hierlatent.json").read_text())
    assert record["step"] == 12 and record["tokens_seen"] == 12 * 4 * 16
    assert record["generator"]["class_path"] == "hltest.RandomTokens" and record["data"]["batch_size"] == 4


def test_second_fresh_fit_into_same_run_dir_is_refused(fitted):
    root, cache, cfg, _ = fitted

    out = run_hierlatent(["fit", "--config", str(cfg)], cwd=root, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: --trainer.logger.init_args.version")


def test_generate_prints_corpus(fitted, monkeypatch, capsys):
    from hierlatent.cli import main

    root, cache, cfg, _ = fitted
    monkeypatch.setenv("HIERLATENT_CACHE", str(cache))
    monkeypatch.chdir(root)
    monkeypatch.setattr("sys.argv", ["hierlatent"])
    main(["generate", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert f"corpus: {next((cache / 'corpora').iterdir())}" in out
    assert '"vocab_size": 64' in out


def test_generation_workers_do_not_import_the_cli(tmp_path):
    """Spawned workers of ``hierlatent generate`` skip re-importing the console script (torch + Lightning)."""
    import numpy as np

    cfg = tiny_fit_config(data={"generator": {"class_path": "hltest.ImportRecorder", "init_args": {"seed": 1}},
                                "batch_size": 4, "generation_workers": 2})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run_hierlatent(["generate", "--config", str(tmp_path / "cfg.yaml")], cwd=tmp_path,
                   env={"HIERLATENT_CACHE": str(tmp_path / "cache")})
    (corpus,) = (tmp_path / "cache" / "corpora").iterdir()
    shards = sorted((corpus / "train").glob("shard-*.bin"))
    assert len(shards) == 4
    assert all(not np.fromfile(p, dtype="<u2").any() for p in shards)  # no worker had Lightning loaded


ICL_RUNNER = {"trainer": {"callbacks": [{"class_path": "hierlatent.callbacks.probes.ProbeRunner", "init_args": {
    "n_heldout": 4, "probes": [{"class_path": "hierlatent.probes.icl.ICLProbe", "init_args": {"n_windows": 4}}]}}]}}


def test_probe_olmo_on_fit_exports_reads_the_runs_corpus(fitted, tmp_path):
    """probe-olmo over a fit run's hf/ takes held-out windows from the corpus its hierlatent.json records."""
    from hierlatent.data.windows import TokenWindows, sample_windows
    from hierlatent.corpora.store import open_corpus

    root, cache, _, _ = fitted
    (tmp_path / "icl.yaml").write_text(yaml.safe_dump(ICL_RUNNER))
    hf = root / "runs" / "hierlatent" / "run" / "hf"
    run_hierlatent(["probe-olmo", "--config", str(tmp_path / "icl.yaml"), "--checkpoints", str(hf),
                    "--output_dir", str(tmp_path / "out"), "--trainer.accelerator", "cpu", "--trainer.logger", "false"],
                   cwd=tmp_path)
    doc = json.loads((tmp_path / "out" / "step-12" / "probes.json").read_text())
    assert doc["induction"]["icl"]["late_position"] == 15  # windows of the model's 16 positions
    # the same seeded windows the data module gives the runner during fit
    corpus = next((cache / "corpora").iterdir())
    windows = sample_windows(TokenWindows.from_corpus(open_corpus(corpus), "test", 16), 4, 0)
    from hierlatent.probes.icl import ICLProbe
    from transformers import AutoModelForCausalLM

    expected = ICLProbe(n_windows=4).run(AutoModelForCausalLM.from_pretrained(hf / "step-12"), windows)["score"]
    assert abs(doc["induction"]["icl"]["score"] - float(expected)) < 1e-5


def test_probe_olmo_without_heldout_text_fails_at_start(tmp_path):
    """A probe that needs held-out text over checkpoints that record no corpus: one line naming --heldout."""
    from tests.olmo.olmo_helpers import make_checkpoint

    make_checkpoint(tmp_path / "ck" / "step100-tokens1M", seed=0)
    (tmp_path / "icl.yaml").write_text(yaml.safe_dump(ICL_RUNNER))
    out = run_hierlatent(["probe-olmo", "--config", str(tmp_path / "icl.yaml"), "--checkpoints", str(tmp_path / "ck"),
                          "--output_dir", str(tmp_path / "out"), "--trainer.accelerator", "cpu"], cwd=tmp_path,
                         check=False)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("error: --heldout: ICLProbe")
    assert not (tmp_path / "out").exists()  # refused before any checkpoint was loaded
