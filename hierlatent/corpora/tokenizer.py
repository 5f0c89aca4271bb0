"""The corpus tokenizer: a Hugging Face WordLevel tokenizer over the generator's token strings.

Saved with ``save_pretrained`` so ``AutoTokenizer.from_pretrained(<corpus>/tokenizer)`` opens it, and so
every HF export of a trained model can ship it beside the weights.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hierlatent.corpora.base import SPECIAL_TAIL, Vocabulary
from hierlatent.io import atomic_directory

#: names of the special tokens in ``Vocabulary.special`` and their HF tokenizer roles
SPECIAL_ROLES = {name: f"{name}_token" for name in SPECIAL_TAIL}


def build_tokenizer(vocab: Vocabulary) -> PreTrainedTokenizerFast:
    """A fast tokenizer mapping each whitespace-separated token string to its id (unknown strings -> UNK)."""
    unk = vocab.tokens[vocab.special["unk"]] if "unk" in vocab.special else None
    model = models.WordLevel({tok: i for i, tok in enumerate(vocab.tokens)}, unk_token=unk)
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    roles = {SPECIAL_ROLES[k]: vocab.tokens[i] for k, i in vocab.special.items() if k in SPECIAL_ROLES}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def save_tokenizer(vocab: Vocabulary, out_dir: str | Path) -> Path:
    """Build the tokenizer and save it atomically (temp directory + rename) to ``out_dir``."""
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        build_tokenizer(vocab).save_pretrained(str(tmp))
    return out_dir
