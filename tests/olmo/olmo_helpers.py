"""Tiny random HF checkpoints (OLMo, Llama, GPT-NeoX) saved in tmp dirs for the probe-olmo tests."""

from __future__ import annotations

from pathlib import Path

import torch


TINY = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=64)


def make_checkpoint(path: Path, seed: int = 0, arch: str = "olmo", **sizes: int) -> Path:
    """Save a tiny random causal LM of ``arch`` with weights drawn from ``seed`` to ``path`` (``sizes`` override TINY)."""
    import transformers as tf

    torch.manual_seed(seed)
    if arch == "olmo":
        model = tf.OlmoForCausalLM(tf.OlmoConfig(**{**TINY, **sizes}))
    elif arch == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**{**TINY, **sizes}, num_key_value_heads=2))
    elif arch == "neox":
        model = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**{**TINY, **sizes}))
    else:
        raise ValueError(arch)
    model.save_pretrained(path)
    return path
