"""Typed construction of the small HF causal LMs hierlatent trains (Llama as in the paper, GPT-2, OLMo).

``build_causal_lm`` validates every argument *before* building anything and names the CLI flag
(``--model.<arg>``) of a bad value, so a wrong config fails in milliseconds, not after corpus generation.
"""

from __future__ import annotations

from typing import Literal

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OlmoConfig, OlmoForCausalLM
from transformers import PreTrainedModel

from hierlatent.checks import check_int, check_positive
from hierlatent.errors import ConfigError

Architecture = Literal["llama", "gpt2", "olmo"]
ARCHITECTURES: tuple[str, ...] = ("llama", "gpt2", "olmo")


def check_model_shape(
    architecture: str,
    n_layers: int,
    d_model: int,
    n_heads: int,
    d_mlp: int,
    context_window: int,
    rope_theta: float = 10000.0,
) -> None:
    """Raise ``ConfigError`` naming the ``--model.*`` flag of the first invalid argument that a config alone fixes.

    The vocabulary size is not among them: it comes from the corpus and is checked by ``build_causal_lm``.

    Args:
        architecture: one of ``llama``, ``gpt2``, ``olmo``.
        n_layers: number of transformer blocks.
        d_model: residual stream width.
        n_heads: attention heads per layer; must divide ``d_model``.
        d_mlp: MLP hidden width.
        context_window: maximum sequence length (position embeddings).
        rope_theta: RoPE base (llama, olmo).
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"--model.architecture: unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")
    for flag, value in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads), ("d_mlp", d_mlp)):
        check_int(f"--model.{flag}", value)
    check_int("--model.context_window", context_window, minimum=2)
    if d_model % n_heads:
        raise ConfigError(f"--model.d_model: {d_model} is not divisible by --model.n_heads={n_heads}")
    if architecture != "gpt2" and (d_model // n_heads) % 2:
        raise ConfigError(f"--model.d_model: head dimension {d_model}//{n_heads} must be even for rotary embeddings")
    check_positive("--model.rope_theta", rope_theta)


def build_causal_lm(
    architecture: Architecture,
    vocab_size: int,
    n_layers: int,
    d_model: int,
    n_heads: int,
    d_mlp: int,
    context_window: int,
    rope_theta: float = 10000.0,
    tie_embeddings: bool = False,
    attn_implementation: str = "sdpa",
) -> PreTrainedModel:
    """Build a randomly initialised HF causal LM; every setting not listed is the HF config default.

    Args:
        architecture: ``llama`` (the paper's), ``gpt2`` or ``olmo``.
        vocab_size: vocabulary size, including special tokens.
        n_layers: number of transformer blocks.
        d_model: residual stream width.
        n_heads: attention heads per layer (key/value heads = heads: no GQA).
        d_mlp: MLP hidden width.
        context_window: maximum sequence length (``max_position_embeddings``).
        rope_theta: RoPE base frequency (ignored by gpt2, which has learned positions).
        tie_embeddings: share the input embedding and the unembedding.
        attn_implementation: HF attention backend (``sdpa``, ``eager``, ``flash_attention_2``).

    Returns:
        The model in train mode, weights in float32.
    """
    # the only check of vocab_size (known here first: the CLI links it from the corpus at instantiation), and the
    # shape's check for callers that did not come through the CLI (LanguageModel, tests, scripts)
    check_int("--model.vocab_size (linked from --data.vocab_size)", vocab_size, minimum=2)
    check_model_shape(architecture, n_layers, d_model, n_heads, d_mlp, context_window, rope_theta)
    # special-token ids are unknown here (they belong to the corpus); the module sets them from the data
    special = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_positions=context_window, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=d_mlp, tie_word_embeddings=tie_embeddings, **special,
        )
        model_cls = GPT2LMHeadModel
    else:
        config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if architecture == "llama" else (OlmoConfig, OlmoForCausalLM)
        config = config_cls(
            vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
            num_attention_heads=n_heads, num_key_value_heads=n_heads, max_position_embeddings=context_window,
            rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
            tie_word_embeddings=tie_embeddings, **special,
        )
    config._attn_implementation = attn_implementation
    config.use_cache = False  # training never decodes; the KV cache only costs memory
    return model_cls(config)


def count_flops_per_token(
    architecture: str, vocab_size: int, n_layers: int, d_model: int, d_mlp: int, context_window: int
) -> int:
    """Training FLOPs per token (forward + backward = 3 x forward), PaLM-style ``6N + 12·L·d·T``.

    Matmul parameters only (norms, biases and embeddings' gather are negligible / not FLOPs); the
    attention score and value products add ``4·L·d·T`` forward FLOPs per token (no causal halving, as
    in the PaLM MFU convention).

    Args:
        architecture: ``llama``/``olmo`` (gated SiLU MLP: 3 matrices) or ``gpt2`` (2 matrices).
        vocab_size: vocabulary size (the unembedding is a matmul).
        n_layers: number of transformer blocks.
        d_model: residual stream width.
        d_mlp: MLP hidden width.
        context_window: sequence length the model is trained at.
    """
    mlp_mats = 2 if architecture == "gpt2" else 3
    matmul_params = n_layers * (4 * d_model * d_model + mlp_mats * d_model * d_mlp) + d_model * vocab_size
    forward = 2 * matmul_params + 4 * n_layers * d_model * context_window
    return 3 * forward
