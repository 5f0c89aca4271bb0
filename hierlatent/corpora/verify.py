"""``hierlatent verify <corpus_dir>``: check a finished corpus against the sizes and CRC-32s in its meta.json.

Exit status 0 when every shard is intact (one ``ok:`` line), 1 with one line ``<shard>: <what is wrong>``
per bad shard otherwise; a directory that is not a finished corpus, or a malformed meta.json, is a
``CorpusError`` (one ``error:`` line, exit 2, through ``hierlatent.cli.main``). Imports neither torch nor
Lightning: it reads every byte of the corpus and nothing else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hierlatent.corpora.integrity import DTYPES, META, read_meta, shard_path, shard_problem
from hierlatent.errors import ConfigError, CorpusError


def verify_corpus(root: Path) -> tuple[list[str], int, int, bool]:
    """Check every shard of the finished corpus at ``root``.

    Args:
        root: the corpus directory (``<HIERLATENT_CACHE>/corpora/<name>-<hash>``).

    Returns:
        (one line per bad shard, number of shards, number of tokens, whether checksums were compared).

    Raises:
        CorpusError: ``root`` is not a finished corpus or its meta.json is malformed.
    """
    meta = read_meta(root)
    itemsize = DTYPES[meta["dtype"]]
    sums = meta.get("shard_crc32")
    bad, n_shards, n_tokens = [], 0, 0
    for split, sizes in meta["shard_tokens"].items():
        for i, tokens in enumerate(sizes):
            shard = shard_path(root, split, i)
            problem = shard_problem(shard, tokens, itemsize, None if sums is None else sums[split][i])
            if problem is not None:
                bad.append(f"{shard}: {problem}")
            n_shards, n_tokens = n_shards + 1, n_tokens + tokens
    if not (root / "tokenizer").is_dir():
        bad.append(f"{root / 'tokenizer'}: missing")
    return bad, n_shards, n_tokens, sums is not None


def main(argv: list[str] | None = None) -> int:
    """``hierlatent verify <corpus_dir>``; returns the exit status (0 intact, 1 damaged).

    Args:
        argv: arguments after ``verify`` (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="hierlatent verify", description="Check a corpus's shards against the sizes and CRC-32s in its meta.json.",
        exit_on_error=False, allow_abbrev=False)
    parser.add_argument("corpus_dir", type=Path, nargs="?", help="corpus directory, e.g. ~/.cache/hierlatent/corpora/pcfg-<hash>")
    try:
        args, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:  # argparse would print the usage and exit; one line instead
        raise ConfigError(f"{exc} (see hierlatent verify --help)") from None
    if extra or args.corpus_dir is None:
        raise ConfigError(f"verify: expected one corpus directory, got {' '.join(extra) or 'none'}"
                          " (see hierlatent verify --help)")
    root = args.corpus_dir.expanduser()
    if not root.is_dir():
        raise CorpusError(f"corpus_dir: {root} is not a directory")
    bad, n_shards, n_tokens, summed = verify_corpus(root)
    for line in bad:
        print(line)
    if bad:
        print(f"{root}: {len(bad)} problem(s); delete {root / META} and run hierlatent generate again (shards whose"
              " checksum matches are kept, the others generated anew)", file=sys.stderr)
        return 1
    checked = "sizes and CRC-32 checksums" if summed else (
        "sizes only (no checksums recorded: written by an older hierlatent)")
    print(f"ok: {root}: {n_shards} shards, {n_tokens} tokens; {checked} match {META}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
