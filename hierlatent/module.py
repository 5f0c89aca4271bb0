"""``LanguageModel``: the LightningModule that trains an HF causal LM from scratch on a hierlatent corpus.

Training mirrors the paper's HF-Trainer setup (AdamW, linear decay, no warmup by default). Logging is
designed to add no host synchronisation outside logging steps: tokens are counted by arithmetic on
batch shapes, throughput is a wall-clock difference between logging steps, and the loss tensor is handed
to Lightning, which converts it only when it writes to the logger.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm

from hierlatent.checks import check_int, check_nonnegative, check_number, check_positive, check_probability
from hierlatent.errors import ConfigError
from hierlatent.model import Architecture, build_causal_lm, count_flops_per_token


class LanguageModel(L.LightningModule):
    """A randomly initialised HF causal language model (``self.model``) trained with AdamW."""

    def __init__(
        self,
        architecture: Architecture = "llama",
        n_layers: int = 16,
        d_model: int = 256,
        n_heads: int = 4,
        d_mlp: int = 1024,
        context_window: int = 512,
        rope_theta: float = 10000.0,
        tie_embeddings: bool = False,
        vocab_size: int = 0,
        lr: float = 5e-5,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: int = 0,
        warmup_fraction: float = 0.0,
        schedule: Literal["linear", "cosine", "constant"] = "linear",
        min_lr_ratio: float = 0.0,
        compile: bool = False,
        attn_implementation: str = "sdpa",
    ) -> None:
        """
        Args:
            architecture: HF model family: llama (the paper's), gpt2 or olmo.
            n_layers: number of transformer blocks (paper: 16).
            d_model: residual stream width (paper: 256).
            n_heads: attention heads per layer; must divide d_model (paper: 4).
            d_mlp: MLP hidden width (paper: 1024).
            context_window: training sequence length = max positions; linked to data.context_window.
            rope_theta: RoPE base frequency (llama, olmo).
            tie_embeddings: share input embedding and unembedding weights.
            vocab_size: vocabulary size; linked from data.vocab_size (leave 0 in configs).
            lr: peak learning rate of AdamW (paper: 5e-5).
            weight_decay: AdamW decoupled weight decay, not applied to biases and norm weights.
            betas: AdamW betas.
            eps: AdamW epsilon.
            warmup_steps: linear warmup optimizer steps (paper: 0); exclusive with warmup_fraction.
            warmup_fraction: warmup as a fraction of the planned optimizer steps.
            schedule: learning-rate decay after warmup: linear (paper), cosine or constant.
            min_lr_ratio: final learning rate as a fraction of lr (linear and cosine).
            compile: run the forward pass through torch.compile.
            attn_implementation: HF attention backend (sdpa, eager, flash_attention_2).
        """
        super().__init__()
        self.save_hyperparameters()
        _check_optim(lr, weight_decay, betas, eps, warmup_steps, warmup_fraction, min_lr_ratio)
        self.model = build_causal_lm(  # checks the model arguments (once) before it builds anything
            architecture, vocab_size, n_layers, d_model, n_heads, d_mlp, context_window, rope_theta,
            tie_embeddings, attn_implementation,
        )
        self.flops_per_token = count_flops_per_token(architecture, vocab_size, n_layers, d_model, d_mlp, context_window)
        self._tokens_seen = 0  # global (all ranks) training tokens, exact python int: no device sync
        self._last_log: tuple[float, int] | None = None  # (wall time, tokens) at the previous logging step
        self._peak_flops: float | None = None

    # -- public state -------------------------------------------------------------------------
    @property
    def tokens_seen(self) -> int:
        """Training tokens consumed so far, summed over all ranks (restored on resume)."""
        return self._tokens_seen

    def forward(self, input_ids: torch.Tensor) -> Any:
        """HF forward with ``labels = input_ids`` (HF shifts them); returns the ``CausalLMOutput``."""
        fn = getattr(self, "_compiled", None)  # not `or`: bool() of a compiled module calls len() and raises
        fn = self.model if fn is None else fn
        return fn(input_ids=input_ids, labels=input_ids)

    # -- lifecycle ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        trainer = _attached_trainer(self)
        dm = getattr(trainer, "datamodule", None)
        special = getattr(dm, "special", None) or {}
        # give the exported HF config the corpus' special ids so generate()/pipelines stop at EOS
        for key in ("eos", "pad"):
            if key in special:
                setattr(self.model.config, f"{key}_token_id", int(special[key]))

    def configure_model(self) -> None:
        if self.hparams.compile and getattr(self, "_compiled", None) is None:
            # not registered as a submodule: state_dict keys stay those of the HF model
            object.__setattr__(self, "_compiled", torch.compile(self.model))

    def on_fit_start(self) -> None:
        self._last_log = None
        if self.device.type == "cuda":
            from lightning.fabric.utilities.throughput import get_available_flops

            self._peak_flops = get_available_flops(self.device, compute_dtype(self.trainer.precision))

    def on_train_start(self) -> None:
        # after the restore: a resumed run's step-0 references were logged by the run it resumes (and kept)
        if self.trainer.global_step == 0:
            self._log_reference_losses()

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self._log_reference_losses()  # repeated so the reference line spans the loss plot

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hierlatent"] = {"tokens_seen": self._tokens_seen}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._tokens_seen = int(checkpoint.get("hierlatent", {}).get("tokens_seen", 0))
        if _attached_trainer(self) is not None:
            # events written after this checkpoint by the killed run must disappear from TensorBoard
            for logger in self.loggers:
                if hasattr(logger, "purge_from"):
                    logger.purge_from(int(checkpoint.get("global_step", 0)))

    # -- steps -------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        input_ids = batch["input_ids"]
        self._tokens_seen += input_ids.numel() * self.trainer.world_size  # shape arithmetic: no sync
        loss = self(input_ids).loss
        # every rank takes the same branch (pure step arithmetic), so the all-reduce is DDP-safe; the logged
        # value is the loss of the whole global batch, identical for any world size at fixed global batch
        if is_logging_step(self.trainer):
            global_loss = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")
            self.log("train/loss", global_loss, on_step=True, on_epoch=False, rank_zero_only=True)
            self._log_step_stats()
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self(batch["input_ids"]).loss
        # during fit, on_validation_end writes it to the logger at the step of the weights it measures
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=batch["input_ids"].shape[0],
                 logger=self.trainer.state.fn != "fit")

    def on_validation_end(self) -> None:
        # val/loss at the global step (= the checkpoint's and probe JSON's step): Lightning would log it one
        # step earlier, at its count of steps taken before the current one; no collective (already reduced)
        value = self.trainer.callback_metrics.get("val/loss")
        if value is not None and not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            for logger in self.loggers:
                logger.log_metrics({"val/loss": float(value)}, step=self.trainer.global_step)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self(batch["input_ids"]).loss
        self.log("test/loss", loss, on_epoch=True, sync_dist=True, batch_size=batch["input_ids"].shape[0])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # the norm costs a reduction over all parameters and a sync: only at logging steps
        if self.trainer.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            norms = grad_norm(self.model, norm_type=2)
            self.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=True, on_epoch=False)

    def _log_step_stats(self) -> None:
        """Metrics computed only at logging steps (the logger flush syncs there anyway)."""
        stats = {"train/tokens_seen": float(self._tokens_seen)}
        schedulers = self.lr_schedulers()
        if schedulers is not None:
            scheduler = schedulers[0] if isinstance(schedulers, list) else schedulers
            stats["train/lr"] = scheduler.get_last_lr()[0]
        now = time.perf_counter()
        if self._last_log is not None and now > self._last_log[0]:
            tps = (self._tokens_seen - self._last_log[1]) / (now - self._last_log[0])
            stats["throughput/tokens_per_sec"] = tps
            if self._peak_flops:
                stats["throughput/mfu"] = self.flops_per_token * tps / (self._peak_flops * self.trainer.world_size)
        self._last_log = (now, self._tokens_seen)
        # no prog_bar metric in training: Lightning converts progress-bar values with .item() on every batch
        self.log_dict(stats, on_step=True, on_epoch=False, rank_zero_only=True)

    def _log_reference_losses(self) -> None:
        refs = getattr(getattr(self.trainer, "datamodule", None), "reference_losses", None) or {}
        metrics = {f"reference/{k}": float(v) for k, v in refs.items() if v is not None and math.isfinite(v)}
        if metrics:
            for logger in self.loggers:
                logger.log_metrics(metrics, step=self.trainer.global_step)

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = self.device.type == "cuda"
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, fused=fused or None)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = hp.warmup_steps or int(round(hp.warmup_fraction * total))
        factor = make_schedule(hp.schedule, total, warmup, hp.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def is_logging_step(trainer: L.Trainer) -> bool:
    """Whether Lightning writes this training step's logged values to the loggers (call before the optimizer step).

    The same rule as Lightning's logger connector: every ``log_every_n_steps``-th step counted from 1, and the
    step at which training stops; never with ``log_every_n_steps`` 0 (``tests/test_lightning_compat.py``
    checks that the two agree at every step of a fit).

    Args:
        trainer: the fitting trainer.
    """
    every = trainer.log_every_n_steps
    return bool(every) and ((trainer.global_step + 1) % every == 0 or trainer.should_stop)


#: the dtype the matrix multiplications run in, by Lightning precision name (for the peak-FLOPs table)
_PRECISION_DTYPES = {"64": torch.float64, "32": torch.float32, "16": torch.float16, "bf16": torch.bfloat16}


def compute_dtype(precision: str) -> torch.dtype:
    """The compute dtype of a Lightning ``trainer.precision`` (``"bf16-mixed"`` -> bfloat16, ...; float32 otherwise).

    Args:
        precision: the trainer's precision name.
    """
    if str(precision).startswith("transformer-engine"):
        return torch.int8  # FP8 matmuls: Lightning's FLOPs table lists them under int8
    return _PRECISION_DTYPES.get(str(precision).split("-")[0], torch.float32)


def _attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """``module.trainer``, or None when the module is used outside a trainer (the property raises then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


class _Schedule:
    """Picklable learning-rate factor ``step -> lr/peak`` (a lambda would not survive a checkpoint)."""

    def __init__(self, kind: str, total: int, warmup: int, min_ratio: float) -> None:
        self.kind, self.total, self.warmup, self.min_ratio = kind, total, warmup, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 1.0 - progress if self.kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def make_schedule(kind: str, total: int, warmup: int, min_ratio: float) -> _Schedule:
    """The LR factor: linear warmup to 1, then linear/cosine decay to ``min_ratio`` at ``total`` (HF's shape).

    Args:
        kind: linear, cosine or constant.
        total: planned optimizer steps.
        warmup: warmup optimizer steps.
        min_ratio: final factor.
    """
    if kind not in ("linear", "cosine", "constant"):
        raise ConfigError(f"--model.schedule: unknown schedule {kind!r}")
    return _Schedule(kind, total, warmup, min_ratio)


def _check_optim(lr: float, weight_decay: float, betas: tuple[float, float], eps: float, warmup_steps: int,
                 warmup_fraction: float, min_lr_ratio: float) -> None:
    """The optimizer and schedule arguments of ``LanguageModel``; ``ConfigError`` naming the ``--model.*`` flag."""
    check_number("--model.lr", lr, 0.0, 1.0, low_open=True, high_open=True)
    check_nonnegative("--model.weight_decay", weight_decay)
    if isinstance(betas, str) or len(betas) != 2:
        raise ConfigError(f"--model.betas: must be two numbers in [0, 1), got {betas!r}")
    for i, beta in enumerate(betas):
        check_number(f"--model.betas[{i}]", beta, 0.0, 1.0, high_open=True)
    check_positive("--model.eps", eps)
    check_int("--model.warmup_steps", warmup_steps, minimum=0)
    check_number("--model.warmup_fraction", warmup_fraction, 0.0, 1.0, high_open=True)
    if warmup_steps and warmup_fraction:
        raise ConfigError("--model.warmup_fraction: set either --model.warmup_steps or --model.warmup_fraction, not both")
    check_probability("--model.min_lr_ratio", min_lr_ratio)
