"""The probe presets in callbacks/*.yaml parse with fit / probe-olmo and carry the paper's settings;
olmo.yaml runs end to end (real probes) on tiny OLMo checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from hierlatent.cli import HierlatentCLI, main

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "tests" / "olmo"))
from olmo_helpers import make_checkpoint  # noqa: E402


def runner_config(preset: str) -> dict:
    (cb,) = yaml.safe_load((ROOT / "callbacks" / preset).read_text())["trainer"]["callbacks"]
    assert cb["class_path"] == "hierlatent.callbacks.probes.ProbeRunner"
    return {p["class_path"].rsplit(".", 1)[1]: p.get("init_args", {}) for p in cb["init_args"]["probes"]}


@pytest.mark.parametrize("preset", ["paper.yaml", "quick.yaml"])
def test_fit_parses_preset(preset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        HierlatentCLI(args=["fit", "--config", str(ROOT / "callbacks" / preset), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    (cb,) = printed["trainer"]["callbacks"]
    assert cb["class_path"] == "hierlatent.callbacks.probes.ProbeRunner" and len(cb["init_args"]["probes"]) == 5


def test_paper_settings():
    probes = runner_config("paper.yaml")
    assert probes["InductionProbe"] == {"n": 64, "n_samples": 20, "ks": list(range(1, 11)),
                                        "aggregate": "mean_pattern", "token_low": 100, "seed": 0, "vocab": "tokenizer"}
    assert probes["HydraProbe"]["ks"] == [1, 2] and probes["HydraProbe"]["final_norm"] is False
    assert probes["HydraProbe"]["n_heldout"] == 100 and probes["HydraProbe"]["mcgrath"] is True
    assert probes["FunctionVectorProbe"]["n_pairs"] == 16 and probes["FunctionVectorProbe"]["seed"] == 42
    assert probes["SyntaxProbe"] == {"n_samples": 100} and "ICLProbe" in probes
    olmo = runner_config("olmo.yaml")
    assert set(olmo) == {"InductionProbe", "HydraProbe"}
    assert olmo["InductionProbe"]["aggregate"] == "per_sample_max"
    assert (olmo["HydraProbe"]["n_random"], olmo["HydraProbe"]["random_len"]) == (10, 2048)


def test_probe_olmo_with_olmo_preset_end_to_end(tmp_path):
    src = tmp_path / "ck"
    sizes = dict(vocab_size=320, num_hidden_layers=3, max_position_embeddings=256)
    for i, step in enumerate([100, 200]):
        make_checkpoint(src / f"step{step}-tokens{i + 1}M", seed=i, **sizes)
    out = tmp_path / "out"
    main(["probe-olmo", "--config", str(ROOT / "callbacks" / "olmo.yaml"), "--checkpoints", str(src),
          "--output_dir", str(out), "--trainer.accelerator", "cpu", "--trainer.logger", "false"])
    assert json.loads((out / "manifest.json").read_text())["summary"]["done"] == 2
    doc = json.loads((out / "step200-tokens2M" / "probes.json").read_text())
    assert doc["step"] == 200 and doc["tokens"] == 2 * 10**6
    assert len(doc["induction"]["k_order"]) == 10 and len(doc["induction"]["k_order_std"]) == 10
    assert set(doc["hydra"]["paper"]["k1"]) == {"1", "2"} and set(doc["hydra"]["paper"]["k2"]) == {"2"}
    assert len(doc["hydra"]["mcgrath"]["compensation"]) == 3
    assert "syntax" not in doc and "function_vectors" not in doc
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("probes/induction/k_order/k1")] == [100, 200]
    assert [e.step for e in acc.Scalars("probes/hydra/paper_k1/layer2")] == [100, 200]
