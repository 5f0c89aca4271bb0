"""What ``probe-olmo`` gives the probes of a checkpoint from its corpus: held-out windows and the vocabulary.

Source, in order: ``--heldout`` (a hierlatent corpus directory, its test split), else the corpus a ``fit``
run's HF export records in its ``hierlatent.json``. Windows are drawn at the runner's seeded offsets
(``ProbeRunner.n_heldout``, ``heldout_seed``) by the same function the data module uses, so a post-hoc
probe of a training checkpoint sees the same windows as the probe during training, and the vocabulary is
the corpus generator's own (its named roles, as in ``fit``). A checkpoint without a corpus (OLMo) gets a
vocabulary whose only role is ``content``: the longest run of ids that are not the tokenizer's special
tokens, so role-reading probes (``role: content``) work and role-needing ones (syntax) are refused.
"""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Any, Literal

import torch

from hierlatent.corpora.base import CorpusGenerator, Vocabulary
from hierlatent.corpora.store import open_corpus
from hierlatent.data.windows import TokenWindows, first_windows, sample_windows
from hierlatent.errors import ConfigError, CorpusError, ProbeError


def heldout_source(checkpoint: Path | None, explicit: Path | None) -> Path | None:
    """The corpus directory whose test split serves as held-out text for one checkpoint, or None.

    Args:
        checkpoint: the checkpoint's local directory (None for a hub revision not yet downloaded).
        explicit: the ``--heldout`` corpus directory, if given.
    """
    if explicit is not None:
        return Path(explicit)
    if checkpoint is None:
        return None
    try:
        corpus = json.loads((Path(checkpoint) / "hierlatent.json").read_text()).get("corpus")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return Path(corpus) if corpus and (Path(corpus) / "meta.json").is_file() else None


def check_heldout(probes: list, checkpoints: list[Path | None], explicit: Path | None) -> None:
    """At start-up: every checkpoint has held-out text when a configured probe needs it (ConfigError otherwise).

    Args:
        probes: all configured probes.
        checkpoints: local directories of the revisions (None where not downloaded yet).
        explicit: the ``--heldout`` corpus directory, if given.
    """
    if explicit is not None:
        try:
            open_corpus(explicit)
        except CorpusError as exc:  # names the directory; the flag is named here
            raise CorpusError(f"--heldout: {exc}") from None
    needs = [p for p in probes if getattr(p, "needs_heldout", False)]
    if not needs:
        return
    missing = [c for c in checkpoints if heldout_source(c, explicit) is None]
    if missing:
        name = "a hub revision" if missing[0] is None else str(missing[0])
        raise ConfigError(
            f"--heldout: {type(needs[0]).__name__} needs held-out corpus windows, and {name} (with {len(missing) - 1}"
            " more) records no corpus: pass --heldout <hierlatent corpus directory> or leave that probe out"
        )


@functools.lru_cache(maxsize=4)
def _test_windows(corpus: str, length: int) -> TokenWindows:
    opened = open_corpus(corpus)
    return TokenWindows.from_corpus(opened, "test", min(length, opened.n_tokens("test")))


def heldout_windows(source: Path, n: int, seed: int, max_positions: int | None,
                    offsets: Literal["random", "first"] = "random") -> torch.Tensor:
    """``n`` test-split windows of the model's context length (capped by the split): LongTensor[n, T].

    Args:
        source: corpus directory.
        n: number of windows.
        seed: seed of the offsets ("random" only).
        max_positions: the model's context length (None: 512).
        offsets: "random" = seeded random offsets; "first" = the first n consecutive windows (research code).
    """
    windows = _test_windows(str(source), int(max_positions or 512))
    return first_windows(windows, n) if offsets == "first" else sample_windows(windows, n, seed)


@functools.lru_cache(maxsize=4)
def corpus_vocabulary(corpus: str) -> Vocabulary:
    """The vocabulary (with its roles) of a hierlatent corpus: its generator rebuilt from ``meta.json``.

    Args:
        corpus: corpus directory.
    """
    meta = open_corpus(corpus).meta
    module, _, name = str(meta.get("class_path", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, CorpusGenerator)):
            raise TypeError(f"{meta['class_path']} is not a CorpusGenerator")
        vocabulary = cls(**meta["init_args"]).vocabulary()
    except (ImportError, AttributeError, TypeError, ValueError, OSError) as err:
        raise CorpusError(f"{corpus}: cannot rebuild the corpus vocabulary from meta.json: {err}") from None
    if vocabulary.size != meta["vocab_size"]:
        raise CorpusError(f"{corpus}: the rebuilt generator has {vocabulary.size} tokens, meta.json {meta['vocab_size']}")
    return vocabulary


def content_only_vocabulary(tokens: list[str], special: set[int]) -> Vocabulary:
    """A vocabulary whose one role ``content`` is the longest run of ids outside ``special`` (first on ties).

    Args:
        tokens: token strings by id.
        special: ids of special tokens (ids beyond ``tokens`` are ignored).
    """
    best, start = (0, 0), 0
    for i in [*sorted(s for s in special if 0 <= s < len(tokens)), len(tokens)]:
        if i - start > best[1] - best[0]:
            best = (start, i)
        start = i + 1
    if best[1] <= best[0]:
        raise ProbeError(f"probe-olmo: the model's {len(tokens)} ids are all special tokens: no content ids")
    return Vocabulary(tuple(tokens), {}, {"content": best})


def model_vocabulary(model: Any) -> Vocabulary:
    """The vocabulary of a model without a corpus: the tokenizer saved beside it (else the config's special ids).

    Size: the tokenizer's ``vocab_size`` capped by the unembedding rows (what ``vocab: tokenizer`` draws below).

    Args:
        model: an HF causal LM loaded with ``from_pretrained`` (its directory is ``name_or_path``).
    """
    rows = int(model.get_output_embeddings().weight.shape[0])
    tokenizer = _saved_tokenizer(str(getattr(model, "name_or_path", "") or ""))
    if tokenizer is None:
        config = model.config
        special = {getattr(config, f"{k}_token_id", None) for k in ("bos", "eos", "pad")} - {None}
        return content_only_vocabulary([f"<{i}>" for i in range(rows)], {int(t) for t in special if isinstance(t, int)})
    size = min(rows, int(tokenizer.vocab_size))
    tokens = [t if t is not None else f"<{i}>" for i, t in enumerate(tokenizer.convert_ids_to_tokens(list(range(size))))]
    return content_only_vocabulary(tokens, set(tokenizer.all_special_ids))


@functools.lru_cache(maxsize=8)
def _saved_tokenizer(directory: str) -> Any:
    if not directory or not any((Path(directory) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError, KeyError, TypeError):  # unreadable tokenizer: the config's special ids instead
        return None


def checkpoint_vocabulary(model: Any, checkpoint: Path | None, explicit: Path | None) -> Vocabulary:
    """The vocabulary the probes of one checkpoint are bound to: its corpus's, else the model's content-only one.

    Args:
        model: the loaded HF causal LM.
        checkpoint: the checkpoint's local directory.
        explicit: the ``--heldout`` corpus directory, if given.
    """
    source = heldout_source(checkpoint, explicit)
    return corpus_vocabulary(str(source)) if source is not None else model_vocabulary(model)


def check_roles(runners: list, checkpoints: list[Path | None], explicit: Path | None) -> None:
    """At start-up: every probe's roles exist for every checkpoint (ProbeError naming the probe otherwise).

    A checkpoint with a corpus binds the probes to its vocabulary here (explicit ranges checked); one without
    has only the ``content`` role, known before its model is loaded or downloaded.

    Args:
        runners: the configured ``ProbeRunner`` callbacks.
        checkpoints: local directories of the revisions (None where not downloaded yet).
        explicit: the ``--heldout`` corpus directory, if given.
    """
    sources = {heldout_source(c, explicit) for c in checkpoints}
    for source in sorted(sources, key=str):
        if source is not None:
            for runner in runners:
                runner.bind(corpus_vocabulary(str(source)))
            continue
        for runner in runners:
            runner.suite.check_roles({"content"}, "a checkpoint without a corpus has only 'content': pass --heldout "
                                     "<hierlatent corpus directory> or drop the probe")
