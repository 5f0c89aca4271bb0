"""A tiny Llama LightningModule + data module with ``heldout_windows`` for ProbeRunner fit tests."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

VOCAB, T = 64, 16


class TinyLM(LightningModule):
    """Tiny Llama trained with SGD; asserts that probing never leaks eval mode or frozen grads into training."""

    def __init__(self, seed: int = 0, vocab: int = VOCAB, n_layers: int = 2) -> None:
        super().__init__()
        import transformers as tf

        torch.manual_seed(seed)
        cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=n_layers,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
        self.model = tf.LlamaForCausalLM(cfg)
        self.tokens_seen = 0

    def training_step(self, batch, batch_idx):
        (ids,) = batch
        assert self.model.training and torch.is_grad_enabled()
        assert all(p.requires_grad for p in self.model.parameters())
        self.tokens_seen += ids.numel()
        return self.model(input_ids=ids, labels=ids).loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TinyData(LightningDataModule):
    """Random token windows; shuffled loader so the training RNG stream matters.

    Args:
        vocab: token ids are drawn from [0, vocab).
    """

    def __init__(self, vocab: int = VOCAB) -> None:
        super().__init__()
        self.vocab = vocab

    def train_dataloader(self):
        gen = torch.Generator().manual_seed(1)
        return DataLoader(TensorDataset(torch.randint(0, self.vocab, (64, T), generator=gen)), batch_size=4, shuffle=True)

    def heldout_windows(self, n: int, seed: int, offsets: str = "random") -> torch.Tensor:
        return torch.randint(0, self.vocab, (n, T), generator=torch.Generator().manual_seed(seed))
