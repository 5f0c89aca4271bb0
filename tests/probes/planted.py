"""Hand-built HF models with known probe answers, and small random models of every probed architecture.

Planted GPT-2 (``planted_induction_gpt2``): learned absolute positions make positional attention easy to
plant. Every residual vector is a sum of "pair codes" — +8 on dim 2i, −8 on dim 2i+1 of a block — so it
has zero mean and a norm fixed by the number of blocks, and LayerNorm (weight 1, bias 0) only rescales it
by a constant. Blocks of the residual (d = 2V + 2T + 2V):
    [0, 2V)            current token     (embedding)
    [2V, 2V + 2T)      position          (learned position embedding)
    [2V + 2T, 4V + 2T) previous token    (written by the layer-0 previous-token head)
Heads (attention logits ≈ ±β, so softmax is ≈ one-hot):
    layer 0 head 0: duplicate-token — query/key read the token (same token ⇒ +β), minus β on itself;
                    value 0, so it writes nothing.
    layer 0 head 1: previous-token — query at p reads position p−1, key reads position; value = token,
                    written into the previous-token block.
    layer 1 head 0: induction — query reads the current token, key reads the previous-token block
                    (key j matches when token j−1 equals the query token) ⇒ query n+i attends to i+1.
                    Key 0 (whose previous-token block holds its own token) is pushed down via a bias dim.
    layer 1 head 1: all zero ⇒ uniform causal attention.
MLPs are zero. With unique tokens in r, the known answers are ≈1 on the planted diagonal, ≈0 elsewhere.

Planted bigram GPT-2 (``planted_role_bigram_gpt2``): zero layers, embeddings encode only the PCFG role of a
token, the untied lm_head gives logit ``beta[role(x)]`` to every token of the role that follows, 0 to the
rest: next-token distributions are known in closed form (syntax and ICL known answers).
"""

from __future__ import annotations

import torch
import transformers as tf
from torch import nn

CODE = 8.0  # pair-code amplitude: a code contributes 2·CODE² to the squared norm


def _gpt2(vocab: int, positions: int, d: int, n_layer: int, n_head: int, tie: bool = True) -> tf.GPT2LMHeadModel:
    cfg = tf.GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=d, n_layer=n_layer, n_head=n_head, n_inner=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, scale_attn_weights=False,
                        bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie, layer_norm_epsilon=1e-12)
    model = tf.GPT2LMHeadModel(cfg).double().eval()
    with torch.no_grad():
        for p in model.transformer.h.parameters():
            p.zero_()
        for ln in [m for m in model.modules() if isinstance(m, nn.LayerNorm)]:
            ln.weight.fill_(1.0)
            ln.bias.zero_()
    return model


def _pair(block_start: int, index: int) -> tuple[int, int]:
    return block_start + 2 * index, block_start + 2 * index + 1


def _write_pairs(matrix: torch.Tensor, block_start: int, count: int) -> None:
    """Row i of ``matrix`` [count, d] gets the pair code of index i in the block."""
    for i in range(count):
        plus, minus = _pair(block_start, i)
        matrix[i, plus], matrix[i, minus] = CODE, -CODE


def _read(column_block: torch.Tensor, block_start: int, count: int, scale: float = 1.0, shift: int = 0) -> None:
    """Columns of ``column_block`` [d, hd]: column i + shift reads the indicator of index i of the block."""
    for i in range(count):
        if 0 <= i + shift < column_block.shape[1]:
            plus, minus = _pair(block_start, i)
            column_block[plus, i + shift] += scale / (2 * CODE)
            column_block[minus, i + shift] -= scale / (2 * CODE)


def planted_induction_gpt2(vocab: int = 48, n: int = 16, beta: float = 40.0,
                           duplicate: bool = True) -> tf.GPT2LMHeadModel:
    """The 2-layer, 2-head planted GPT-2 described in the module docstring (float64).

    Args:
        vocab: vocabulary size V.
        n: half length of the repeated stimulus (context = 2n).
        beta: attention logit gap.
        duplicate: plant the layer-0 duplicate-token head (False: that head is zero ⇒ uniform).
    """
    T, d = 2 * n, 4 * vocab + 4 * n
    hd = d // 2
    tok, pos, prev = 0, 2 * vocab, 2 * vocab + 2 * T
    assert hd >= vocab + T + 1, "head too small for the planted codes"
    model = _gpt2(vocab, T, d, n_layer=2, n_head=2)
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
        model.transformer.wpe.weight.zero_()
        _write_pairs(model.transformer.wte.weight, tok, vocab)
        _write_pairs(model.transformer.wpe.weight, pos, T)
        layer0, layer1 = (blk.attn for blk in model.transformer.h)
        w0, w1 = layer0.c_attn.weight, layer1.c_attn.weight  # [d, 3d]: q | k | v, each split into 2 heads
        q, k, v = (slice(i * d, (i + 1) * d) for i in range(3))
        if duplicate:  # head 0 of layer 0: same token +β, itself −β
            _read(w0[:, q][:, :hd], tok, vocab, scale=beta)
            _read(w0[:, k][:, :hd], tok, vocab)
            _read(w0[:, q][:, :hd], pos, T, scale=beta, shift=vocab)
            _read(w0[:, k][:, :hd], pos, T, scale=-1.0, shift=vocab)
        # head 1 of layer 0: query at p reads position p − 1's slot; value = token -> previous-token block
        _read(w0[:, q][:, hd:], pos, T, scale=beta, shift=-1)
        _read(w0[:, k][:, hd:], pos, T)
        _read(w0[:, v][:, hd:], tok, vocab)
        for t in range(vocab):
            plus, minus = _pair(prev, t)
            layer0.c_proj.weight[hd + t, plus], layer0.c_proj.weight[hd + t, minus] = CODE, -CODE
        # head 0 of layer 1: current token vs previous-token block; bias dim pushes key 0 down
        _read(w1[:, q][:, :hd], tok, vocab, scale=beta)
        _read(w1[:, k][:, :hd], prev, vocab)
        layer1.c_attn.bias[q.start + vocab] = beta
        plus, minus = _pair(pos, 0)
        w1[plus, k.start + vocab], w1[minus, k.start + vocab] = -2.0 / (2 * CODE), 2.0 / (2 * CODE)
    return model


ROLES = {"subjects": (0, 300), "verbs": (300, 600), "objects": (600, 900), "connectors": (900, 1000)}
NEXT = {"subjects": "verbs", "verbs": "objects", "objects": "connectors", "connectors": "subjects"}


def role_of(token: int) -> str | None:
    """The PCFG role of a token id (None for EOS/UNK/PAD)."""
    return next((r for r, (lo, hi) in ROLES.items() if lo <= token < hi), None)


def planted_role_bigram_gpt2(betas: dict[str, float], vocab: int = 1003) -> tf.GPT2LMHeadModel:
    """Zero-layer-effect GPT-2: after a token of role r, every token of role NEXT[r] gets logit betas[r], others 0.

    Args:
        betas: logit of the following role, per role of the current token (missing role = 0).
        vocab: vocabulary size (PCFG layout, 1003).
    """
    d = 2 * (len(ROLES) + 1) + 2  # pair code per role (+ one for "other"), 2 spare dims so d is even-headed
    model = _gpt2(vocab, 16, d, n_layer=1, n_head=1, tie=False)
    roles = list(ROLES)
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
        wte = model.transformer.wte.weight
        wte.zero_()
        codes = torch.zeros(len(roles) + 1, d, dtype=wte.dtype)
        _write_pairs(codes, 0, len(roles) + 1)
        for t in range(vocab):
            r = role_of(t)
            wte[t] = codes[roles.index(r) if r is not None else len(roles)]
        # LayerNorm of one pair code (norm² = 2·CODE²) over d dims multiplies it by sqrt(d / (2·CODE²)).
        ln_scale = (d / (2 * CODE**2)) ** 0.5
        head = model.lm_head.weight
        head.zero_()
        for i, r in enumerate(roles):
            lo, hi = ROLES[NEXT[r]]
            plus, minus = _pair(0, i)
            head[lo:hi, plus] += betas.get(r, 0.0) / (2 * CODE * ln_scale)
            head[lo:hi, minus] -= betas.get(r, 0.0) / (2 * CODE * ln_scale)
    return model


def bigram_logits(tokens: torch.Tensor, betas: dict[str, float], vocab: int = 1003) -> torch.Tensor:
    """The planted bigram's logits for each token of ``tokens`` (known answer, no model involved).

    Args:
        tokens: 1-D token ids.
        betas: as for ``planted_role_bigram_gpt2``.
        vocab: vocabulary size.
    """
    out = torch.zeros(len(tokens), vocab, dtype=torch.float64)
    for i, t in enumerate(tokens.tolist()):
        r = role_of(t)
        if r is not None:
            lo, hi = ROLES[NEXT[r]]
            out[i, lo:hi] = betas.get(r, 0.0)
    return out


def tiny_model(arch: str, n_layers: int = 2, d_model: int = 16, n_heads: int = 2, vocab: int = 1003,
               positions: int = 128, init: float = 0.02, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> nn.Module:
    """A small random HF causal LM: arch in llama, gpt2, olmo, olmo2, neox.

    Args:
        arch: architecture key.
        n_layers: decoder layers.
        d_model: hidden size.
        n_heads: attention heads.
        vocab: vocabulary size.
        positions: context length.
        init: initializer_range (large = peaked attention; tiny = uniform attention).
        seed: torch seed of the initialisation.
        dtype: parameter dtype.
    """
    special = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0, initializer_range=init)
    if arch == "gpt2":
        cls, cfg = tf.GPT2LMHeadModel, tf.GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=d_model,
                                                     n_layer=n_layers, n_head=n_heads, resid_pdrop=0.0,
                                                     embd_pdrop=0.0, attn_pdrop=0.0, **special)
    else:
        cls, cfg_cls = {"llama": (tf.LlamaForCausalLM, tf.LlamaConfig), "olmo": (tf.OlmoForCausalLM, tf.OlmoConfig),
                        "olmo2": (tf.Olmo2ForCausalLM, tf.Olmo2Config),
                        "neox": (tf.GPTNeoXForCausalLM, tf.GPTNeoXConfig)}[arch]
        cfg = cfg_cls(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                      intermediate_size=2 * d_model, max_position_embeddings=positions, **special)
    torch.manual_seed(seed)
    return cls(cfg).to(dtype).eval()


ARCHS = ("llama", "gpt2", "olmo", "olmo2", "neox")


def forbid_sdpa(model, monkeypatch) -> None:
    """Make ``model`` behave like an architecture without SDPA: the probes then stay eager (materialised masks)."""
    real = model.set_attn_implementation

    def no_sdpa(impl):
        if impl == "sdpa":
            raise ValueError("no SDPA")
        return real(impl)

    monkeypatch.setattr(model, "set_attn_implementation", no_sdpa)
