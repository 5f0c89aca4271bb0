"""Corpus integrity: shard checksums, per-shard sidecars and a strict reader of ``meta.json``.

Every shard's CRC-32 (``zlib.crc32`` of its bytes, 8 lowercase hex digits) is computed from the tokens in
memory when the shard is written. It goes into a sidecar ``<shard>.json`` (``{"tokens": n, "crc32": "…"}``),
written atomically right after the shard, so an interrupted corpus knows which of its shards are finished
and intact; the finished corpus records all of them in ``meta.json`` (``shard_crc32``). Sizes are checked at
every open (cheap), checksums when shards are reused to finish an interrupted corpus and by
``hierlatent verify``.

Standard library, numpy-free and torch-free: ``hierlatent verify`` imports only this. The shard layout
(``shard_path``) lives here too, so a generator that reads an earlier split (PCFG) needs no store import.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

from hierlatent.errors import CorpusError
from hierlatent.io import atomic_write_json

META = "meta.json"
FORMAT = 1
DTYPES = {"uint16": 2, "uint32": 4}  # meta.json dtype -> bytes per token
_CHUNK = 16 * 2**20


def crc32_bytes(data: bytes | memoryview) -> str:
    """CRC-32 of ``data`` as 8 lowercase hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def crc32_file(path: Path) -> str:
    """CRC-32 of a file's bytes (streamed in 16 MiB chunks), as 8 lowercase hex digits."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc & 0xFFFFFFFF:08x}"


def shard_path(root: Path, split: str, index: int) -> Path:
    """``root/<split>/shard-<index:05d>.bin``: where shard ``index`` of ``split`` lives in a corpus directory.

    Args:
        root: the corpus directory.
        split: the split name.
        index: the shard's number in the split.
    """
    return root / split / f"shard-{index:05d}.bin"


def sidecar_path(shard: Path) -> Path:
    """``train/shard-00000.bin`` -> ``train/shard-00000.bin.json``."""
    return shard.with_name(shard.name + ".json")


def write_sidecar(shard: Path, n_tokens: int, crc32: str) -> None:
    """Record a just-written shard's token count and checksum (atomically, after the shard itself)."""
    atomic_write_json(sidecar_path(shard), {"tokens": int(n_tokens), "crc32": crc32})


def read_sidecar(shard: Path) -> tuple[int, str] | None:
    """``(tokens, crc32)`` from a shard's sidecar; None when it is missing or malformed (the shard is redone)."""
    try:
        info = json.loads(sidecar_path(shard).read_bytes().decode("utf-8"))
        tokens, crc = info["tokens"], info["crc32"]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        return None
    if not _is_count(tokens) or not _is_crc(crc):
        return None
    return tokens, crc


def shard_problem(shard: Path, n_tokens: int, itemsize: int, crc32: str | None) -> str | None:
    """Why ``shard`` is not the recorded one (missing, wrong size, wrong checksum), or None when it is.

    Args:
        shard: the shard file.
        n_tokens: tokens recorded for it.
        itemsize: bytes per token.
        crc32: recorded checksum (None: check the size only).
    """
    try:
        size = shard.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != n_tokens * itemsize:
        return f"{size} bytes, expected {n_tokens * itemsize} ({n_tokens} tokens)"
    if crc32 is not None:
        actual = crc32_file(shard)
        if actual != crc32:
            return f"checksum crc32 {actual}, expected {crc32}"
    return None


# -- meta.json ------------------------------------------------------------------------------------
def read_meta(root: Path) -> dict[str, Any]:
    """Read and check ``root/meta.json``: any malformed file is one ``CorpusError`` naming it and the fault.

    Raises:
        CorpusError: no meta.json (not a finished corpus), unreadable, not UTF-8, not JSON, or a field that
            is missing or has the wrong type or shape.
    """
    file = Path(root) / META
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise CorpusError(f"{root}: not a finished corpus (no {META})") from exc
    except OSError as exc:
        raise CorpusError(f"{file}: unreadable ({exc.strerror or exc})") from exc
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{file}: malformed corpus metadata: not UTF-8 text (bad byte at offset {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{file}: malformed corpus metadata: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    problem = meta_problem(meta)
    if problem is not None:
        raise CorpusError(f"{file}: {problem}")
    return meta


def meta_problem(meta: Any) -> str | None:
    """What is wrong with a parsed ``meta.json`` (one phrase), or None when every field the reader uses is sound."""
    if not isinstance(meta, dict):
        return f"malformed corpus metadata: expected a JSON object, got {type(meta).__name__}"
    if meta.get("format") != FORMAT:
        return f"unknown corpus format {meta.get('format')!r} (this hierlatent reads format {FORMAT})"
    bad = _field_problem(meta)
    return None if bad is None else f"malformed corpus metadata: {bad}"


def _field_problem(meta: dict[str, Any]) -> str | None:
    checks = (
        ("vocab_size", lambda v: _is_count(v) and v > 0, "a positive integer"),
        ("dtype", lambda v: v in DTYPES, f"one of {sorted(DTYPES)}"),
        ("special_tokens", lambda v: _is_map(v, _is_count), "an object of token ids"),
        ("reference_losses", lambda v: _is_map(v, _is_number), "an object of numbers"),
        ("n_shards", lambda v: _is_map(v, _is_count) and {"train", "test"} <= set(v),
         "an object of shard counts with 'train' and 'test'"),
    )
    for key, ok, what in checks:
        if key not in meta:
            return f"field {key!r} is missing"
        if not ok(meta[key]):
            return f"field {key!r} must be {what}, got {_short(meta[key])}"
    n_shards = meta["n_shards"]
    for key, ok in (("n_tokens", _is_count), ("shard_tokens", _is_count), ("shard_crc32", _is_crc)):
        if key not in meta:
            if key == "shard_crc32":  # corpora written before checksums were recorded
                continue
            return f"field {key!r} is missing"
        value = meta[key]
        if not isinstance(value, dict) or set(value) != set(n_shards):
            return f"field {key!r} must be an object with the splits of 'n_shards' {sorted(n_shards)}"
        for split, item in value.items():
            if key == "n_tokens":
                good = ok(item)
            else:
                good = isinstance(item, list) and len(item) == n_shards[split] and all(ok(x) for x in item)
            if not good:
                return f"field {key!r}[{split!r}] is malformed: {_short(item)}"
    for split, sizes in meta["shard_tokens"].items():
        if sum(sizes) != meta["n_tokens"][split]:
            return f"'shard_tokens'[{split!r}] sums to {sum(sizes)}, but 'n_tokens' says {meta['n_tokens'][split]}"
    return None


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_crc(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 8 and all(c in "0123456789abcdef" for c in v)


def _is_map(v: Any, ok: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and ok(x) for k, x in v.items())


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
