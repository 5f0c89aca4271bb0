"""One HF causal-LM checkpoint loaded for probing only (never trained), and probing it.

``probe-olmo`` loads a ``FrozenCausalLM`` per revision on its rank's device, has ``probe_checkpoint`` run
every configured runner's ``ProbeSuite`` (the same suite training uses) on its ``.model``, and frees it
before the next revision. No Trainer runs it, so it is a plain object, not a LightningModule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from hierlatent.errors import CheckpointError, ConfigError
from hierlatent.olmo.heldout import checkpoint_vocabulary, heldout_source, heldout_windows

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: Literal["auto", "float32", "bfloat16", "float16"], device: torch.device) -> torch.dtype:
    """``auto`` = bf16 on a CUDA device with bf16 support (halves memory of a 1B model), else float32."""
    if dtype == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype: must be auto, {', '.join(_DTYPES)}; got {dtype!r}")
    return _DTYPES[dtype]


class FrozenCausalLM:
    """An HF ``AutoModelForCausalLM`` checkpoint in eval mode with no gradients, on one device.

    Attributes: ``model`` (the HF model), ``path``, ``device`` and ``dtype`` (the resolved parameter dtype).
    The vocabulary probe-olmo binds comes from ``model`` and ``path`` (``checkpoint_vocabulary``).

    Args:
        path: Checkpoint directory (config.json + weights).
        device: Device to load the model onto.
        dtype: Parameter dtype (``auto``: bf16 on GPU, float32 on CPU).
    """

    def __init__(self, path: Path, device: torch.device | str = "cpu",
                 dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto") -> None:
        self.path, self.device = Path(path), torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = _load(self.path, self.device, self.dtype)


def _load(path: Path, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The checkpoint's model on ``device``, frozen; any load failure as one ``CheckpointError`` line."""
    from transformers import AutoModelForCausalLM

    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: config.json missing")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    except Exception as err:  # corrupt weights, unknown architecture, truncated files: one message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot load checkpoint: {type(err).__name__}: {first}") from err
    model.requires_grad_(False)
    return model.to(device).eval()


def probe_checkpoint(runners: list, model: torch.nn.Module, checkpoint: Path, heldout: Path | None, step: int,
                     tokens: int | None) -> dict[str, Any]:
    """Every runner's suite on one loaded checkpoint, bound to its vocabulary: the merged probe document.

    Args:
        runners: the configured ``ProbeRunner`` callbacks (their suites and held-out settings).
        model: the loaded HF causal LM.
        checkpoint: its local directory (where ``hierlatent.json`` may record a corpus).
        heldout: the ``--heldout`` corpus directory, if given.
        step: the revision's training step.
        tokens: the revision's training tokens, None when unknown.
    """
    vocabulary = checkpoint_vocabulary(model, checkpoint, heldout)
    source = heldout_source(checkpoint, heldout)
    doc: dict[str, Any] = {}
    for runner in runners:
        runner.suite.bind(vocabulary)
        runner.suite.validate(model)
        windows = None
        if source is not None and runner.n_heldout > 0:
            windows = heldout_windows(source, runner.n_heldout, runner.heldout_seed,
                                      getattr(model.config, "max_position_embeddings", None), runner.heldout_offsets)
        part = runner.suite.run(model, step, tokens=tokens, heldout=windows)
        seconds = {**doc.get("probe_seconds", {}), **part.pop("probe_seconds", {})}
        doc.update(part)
        doc["probe_seconds"] = seconds
    return doc
