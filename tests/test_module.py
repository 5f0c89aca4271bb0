"""In-process tests of the model builder, ``LanguageModel`` (schedule, logging, tokens) and ``HFCheckpoint`` exports."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator

from hierlatent.callbacks.checkpoint import HFCheckpoint
from hierlatent.data import CorpusDataModule, TokenWindows
from hierlatent.errors import ConfigError
from hierlatent.model import build_causal_lm, count_flops_per_token
from hierlatent.module import LanguageModel, make_schedule
from hierlatent.trainer import ResumableTensorBoardLogger

from hltest import RandomTokens

TINY = dict(n_layers=2, d_model=32, n_heads=4, d_mlp=64, context_window=16)


# -- model builder ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama", "gpt2", "olmo"])
def test_build_causal_lm_architectures(arch):
    model = build_causal_lm(arch, 50, rope_theta=5000.0, tie_embeddings=True, **TINY)
    ids = torch.randint(0, 50, (2, 16))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 16, 50) and torch.isfinite(out.loss)
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert model.config.vocab_size == 50 and model.config.num_hidden_layers == 2
    if arch != "gpt2":
        assert model.config.rope_parameters["rope_theta"] == 5000.0
        assert model.config.max_position_embeddings == 16 and model.config.intermediate_size == 64


def test_paper_llama_size():
    # docs/research.md#training: 16 x 256 x 4 heads, MLP 1024, context 512, untied: ~17.3M parameters with the 1003 PCFG vocab
    model = build_causal_lm("llama", 1003, 16, 256, 4, 1024, 512)
    n = sum(p.numel() for p in model.parameters())
    assert n == 16 * (4 * 256 * 256 + 3 * 256 * 1024 + 2 * 256) + 2 * 1003 * 256 + 256


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        (dict(d_model=30, n_heads=4), "--model.d_model"),
        (dict(architecture="mamba"), "--model.architecture"),
        (dict(vocab_size=0), "--model.vocab_size"),
        (dict(n_layers=0), "--model.n_layers"),
        (dict(context_window=1), "--model.context_window"),
        (dict(rope_theta=-1.0), "--model.rope_theta"),
    ],
)
def test_model_validation_names_flag(kwargs, flag):
    args = dict(architecture="llama", vocab_size=50, **TINY) | kwargs
    with pytest.raises(ConfigError, match=flag):
        build_causal_lm(**args)


@pytest.mark.parametrize("kwargs, flag", [(dict(lr=0), "--model.lr"), (dict(warmup_steps=2, warmup_fraction=0.1), "--model.warmup_fraction")])
def test_module_validation_names_flag(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        LanguageModel(vocab_size=50, **TINY, **kwargs)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_flops_per_token_matches_flop_counter(arch):
    """Known answer: torch's FlopCounter on one forward+backward equals our count (no causal halving either)."""
    from lightning.fabric.utilities.throughput import measure_flops

    T, V = 16, 50
    model = build_causal_lm(arch, V, attn_implementation="eager", **TINY)
    ids = torch.randint(0, V, (1, T))
    measured = measure_flops(model, lambda: model(input_ids=ids).logits, lambda y: y.sum())
    ours = count_flops_per_token(arch, V, TINY["n_layers"], TINY["d_model"], TINY["d_mlp"], T) * T
    assert measured == pytest.approx(ours, rel=0.02)


def test_schedules_known_values():
    lin = make_schedule("linear", total=10, warmup=0, min_ratio=0.0)
    assert [lin(s) for s in (0, 5, 10, 12)] == [1.0, 0.5, 0.0, 0.0]  # HF get_linear_schedule_with_warmup
    warm = make_schedule("linear", total=10, warmup=4, min_ratio=0.0)
    assert warm(0) == pytest.approx(0.2) and warm(4) == 1.0 and warm(7) == pytest.approx(0.5)
    cos = make_schedule("cosine", total=10, warmup=0, min_ratio=0.1)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.55) and cos(10) == pytest.approx(0.1)
    assert make_schedule("constant", 10, 0, 0.0)(9) == 1.0
    with pytest.raises(ConfigError, match="--model.schedule"):
        make_schedule("step", 10, 0, 0.0)


# -- training ----------------------------------------------------------------------------------------------
def _periodic_dm(tmp_path, batch_size=4, T=16):
    """Data module over a period-7 token sequence (learnable in a few steps) with a fake corpus record."""
    gen = RandomTokens()
    dm = CorpusDataModule(gen, context_window=T, batch_size=batch_size)
    train = np.tile(np.arange(7, dtype=np.uint16), 3000)
    tok_dir = _tokenizer_dir(tmp_path / "tokenizer", gen)
    corpus = SimpleNamespace(reference_losses={"zero": 0.0}, tokenizer_dir=tok_dir, path=tmp_path / "corpus")
    dm.attach(TokenWindows.from_arrays([train], T), TokenWindows.from_arrays([train[:2000]], T), corpus)
    return dm


def _tokenizer_dir(path, gen):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(gen.vocabulary().tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]").save_pretrained(path)
    return path


def _scalars(log_dir):
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit")
    L.seed_everything(0)
    dm = _periodic_dm(tmp)
    model = LanguageModel(vocab_size=dm.vocab_size, lr=3e-3, warmup_steps=2, **TINY)
    logger = ResumableTensorBoardLogger(save_dir=str(tmp / "runs"), name="t", version="v")
    trainer = L.Trainer(
        max_steps=30, logger=logger, callbacks=[HFCheckpoint(every_fraction=0.5, save_top_k=-1)], log_every_n_steps=5,
        val_check_interval=10, limit_val_batches=2, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, dm)
    return SimpleNamespace(trainer=trainer, model=model, dm=dm, log_dir=trainer.log_dir)


def test_training_learns_and_counts_tokens(trained):
    _, s = _scalars(trained.log_dir)
    losses = [v for _, v in s["train/loss"]]
    assert [st for st, _ in s["train/loss"]] == [4, 9, 14, 19, 24, 29]  # the step's own loss, at log cadence
    assert losses[-1] < losses[0] - 1.0 < math.log(64) - 1.0  # a period-7 sequence is learnable in context
    assert trained.model.tokens_seen == 30 * 4 * 16
    assert dict(s["train/tokens_seen"])[29] == 30 * 4 * 16


def test_logged_tags_and_cadence(trained):
    acc, s = _scalars(trained.log_dir)
    log_steps = [4, 9, 14, 19, 24, 29]
    assert [st for st, _ in s["train/grad_norm"]] == log_steps  # only at logging steps
    assert [st for st, _ in s["train/lr"]] == log_steps
    assert [st for st, _ in s["throughput/tokens_per_sec"]] == log_steps[1:]  # needs a previous logging step
    assert all(v > 0 for _, v in s["throughput/tokens_per_sec"])
    assert len(s["val/loss"]) == 3
    # linear decay after 2 warmup steps: lr factor at the logged step is exact arithmetic
    sched = make_schedule("linear", 30, 2, 0.0)
    for step, lr in s["train/lr"]:
        assert lr == pytest.approx(3e-3 * sched(step), rel=1e-5)
    # the reference line is logged at fit start and at each validation
    assert [st for st, _ in s["reference/zero"]][0] == 0 and len(s["reference/zero"]) == 4
    assert "custom_scalars__config__" in acc.Tags()["tensors"]
    plugins = acc.PluginTagToContent("hparams")
    session = plugins["_hparams_/experiment"]
    assert b"val/loss" in session  # the HPARAMS tab lists val/loss as its metric
    assert "hp_metric" not in s


def test_hf_export_opens_with_auto_classes(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_root = trained.trainer.log_dir + "/hf"
    # every_fraction 0.5 of 30 steps -> checkpoints at 15 and 30; nothing half-written is left
    import os

    assert sorted(os.listdir(hf_root)) == ["step-15", "step-30"]
    path = hf_root + "/step-30"
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 0, 1, 2]])
    trained.model.model.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, trained.model.model(input_ids=ids).logits, atol=1e-5)
    assert tok.convert_tokens_to_ids(["t3", "[EOS]"]) == [3, 61]
    assert model.config.eos_token_id == 61 and model.config.pad_token_id == 63
    record = json.loads(open(path + "/hierlatent.json").read())
    assert record["step"] == 30 and record["tokens_seen"] == 30 * 4 * 16
    assert record["model"]["d_model"] == 32 and record["generator"]["class_path"].endswith("RandomTokens")


def test_failed_export_does_not_stop_training(tmp_path, monkeypatch, caplog):
    import hierlatent.callbacks.checkpoint as ck

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(ck, "export_hf", boom)
    dm = _periodic_dm(tmp_path)
    model = LanguageModel(vocab_size=dm.vocab_size, **TINY)
    trainer = L.Trainer(
        max_steps=4, logger=ResumableTensorBoardLogger(save_dir=str(tmp_path), name="t", version="v"),
        callbacks=[HFCheckpoint(every_n_train_steps=2)], limit_val_batches=0, enable_progress_bar=False,
        enable_model_summary=False,
    )
    with caplog.at_level("ERROR"):
        trainer.fit(model, dm)
    assert trainer.global_step == 4
    assert sorted(p.name for p in (tmp_path / "t" / "v" / "checkpoints").iterdir()) == ["last.ckpt", "step=2.ckpt", "step=4.ckpt"]
    assert "disk on fire" in caplog.text


def test_no_host_sync_outside_logging_steps(tmp_path, monkeypatch):
    """``Tensor.item`` (the host sync) is only called on logging steps.

    Exempt: Adam's ``step`` counter and the DataLoader's per-epoch base seed, host tensors (no device sync).
    """
    import traceback

    dm = _periodic_dm(tmp_path)
    model = LanguageModel(vocab_size=dm.vocab_size, **TINY)
    steps: list[int] = []
    real_item = torch.Tensor.item

    def counting_item(self):
        optim = any("torch/optim" in f.filename or "torch/utils/data" in f.filename for f in traceback.extract_stack(limit=8))
        if model._trainer is not None and model.trainer.training and not optim:
            steps.append(model.trainer.global_step)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    trainer = L.Trainer(
        max_steps=20, logger=ResumableTensorBoardLogger(save_dir=str(tmp_path), name="t", version="v"),
        log_every_n_steps=10, limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, dm)
    assert steps and set(steps) <= {9, 10, 19, 20}, sorted(set(steps))
    assert math.isfinite(trainer.callback_metrics["train/loss"])
