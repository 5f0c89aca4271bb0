"""Faults of the corpus store (issue 11): checksummed shards, malformed meta.json, ``verify``, orphan workers.

Each test first produces the fault for real (truncated or altered shard bytes, a deleted meta.json, a
SIGKILLed parent process) and then checks that it ends cleanly.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from _fake import CountingCorpus
from _faults_helpers import SlowShards, kill_when_busy_and_check
from hierlatent.corpora import store
from hierlatent.corpora.verify import main as verify_main
from hierlatent.errors import CorpusError


@pytest.fixture
def built(tmp_cache) -> Path:
    """A finished CountingCorpus (4 train shards, 1 test shard) in a fresh cache; returns its directory."""
    return store.build_corpus(CountingCorpus(), workers=1, progress=False).path


def _shard(root: Path, i: int = 1) -> Path:
    return root / "train" / f"shard-{i:05d}.bin"


def _fresh_bytes() -> dict[str, bytes]:
    gen = CountingCorpus()
    return {f"{s}/{i}": np.ascontiguousarray(gen.generate_shard(s, i), dtype="<u2").tobytes()
            for s, n in gen.shard_counts().items() for i in range(n)}


def _bytes(root: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{int(p.stem[6:])}": p.read_bytes() for p in root.glob("*/shard-*.bin")}


# -- checksums ---------------------------------------------------------------------------------------
def test_meta_records_every_shards_crc32(built):
    meta = json.loads((built / "meta.json").read_text())
    for split, n in meta["n_shards"].items():
        assert len(meta["shard_crc32"][split]) == n
        for i, crc in enumerate(meta["shard_crc32"][split]):
            data = (built / split / f"shard-{i:05d}.bin").read_bytes()
            assert crc == f"{zlib.crc32(data):08x}"


@pytest.mark.parametrize("fault", ["truncated", "altered", "no_sidecar", "bad_sidecar"])
def test_interrupted_corpus_regenerates_damaged_shards(built, fault):
    """The issue's case: a truncated shard with meta.json deleted was kept and meta.json recorded fewer tokens."""
    full = json.loads((built / "meta.json").read_text())["n_tokens"]
    shard, kept = _shard(built), _shard(built, 2)
    data = shard.read_bytes()
    if fault == "truncated":
        shard.write_bytes(data[: len(data) // 2])
    elif fault == "altered":  # same size, one bit flipped: only the checksum can tell
        shard.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    elif fault == "no_sidecar":  # killed between writing the shard and its record
        Path(f"{shard}.json").unlink()
    else:
        Path(f"{shard}.json").write_bytes(b"\xff{not json")
    (built / "meta.json").unlink()
    stamp = kept.stat().st_mtime_ns
    corpus = store.build_corpus(CountingCorpus(), workers=1, progress=False)
    assert corpus.meta["n_tokens"] == full
    assert _bytes(built) == _fresh_bytes()
    assert kept.stat().st_mtime_ns == stamp  # an intact shard with its record is kept, not regenerated
    assert verify_main([str(built)]) == 0


# -- malformed meta.json: one CorpusError line naming the file -------------------------------------
MALFORMED = {
    "random bytes": (b"\x8f\xff\x00\x13garbage", "not UTF-8"),
    "truncated json": (b'{"format": 1, "vocab', "not valid JSON"),
    "a list": (b"[]", "expected a JSON object, got list"),
    "format only": (b'{"format": 1}', "field 'vocab_size' is missing"),
    "unknown format": (b'{"format": 99}', "unknown corpus format 99"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_meta_json_is_one_corpus_error(built, name):
    content, phrase = MALFORMED[name]
    (built / "meta.json").write_bytes(content)
    with pytest.raises(CorpusError) as info:
        store.open_corpus(built)
    message = str(info.value)
    assert str(built / "meta.json") in message and phrase in message and "\n" not in message


@pytest.mark.parametrize("edit, phrase", [
    (lambda m: m.update(vocab_size="53"), "field 'vocab_size' must be a positive integer"),
    (lambda m: m.update(dtype="float64"), "field 'dtype' must be one of"),
    (lambda m: m.pop("shard_tokens"), "field 'shard_tokens' is missing"),
    (lambda m: m["shard_tokens"].update(train=[1, 2]), "field 'shard_tokens'['train'] is malformed"),
    (lambda m: m["n_tokens"].update(train=5), "'shard_tokens'['train'] sums to"),
    (lambda m: m["shard_crc32"].pop("test"), "field 'shard_crc32' must be an object with the splits"),
    (lambda m: m.update(special_tokens=[1]), "field 'special_tokens' must be an object of token ids"),
])
def test_meta_json_with_bad_fields_is_one_corpus_error(built, edit, phrase):
    meta = json.loads((built / "meta.json").read_text())
    edit(meta)
    (built / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorpusError, match="meta.json: malformed corpus metadata") as info:
        store.open_corpus(built)
    assert phrase in str(info.value)


def test_open_checks_sizes_and_names_the_shard(built):
    _shard(built).write_bytes(_shard(built).read_bytes()[:-2])
    with pytest.raises(CorpusError, match=r"shard-00001.bin: corpus is damaged .*hierlatent verify"):
        store.open_corpus(built)


# -- hierlatent verify ---------------------------------------------------------------------------------
def test_verify_intact_and_damaged(built, capsys):
    assert verify_main([str(built)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {built}: 5 shards")
    data = _shard(built, 1).read_bytes()
    _shard(built, 1).write_bytes(bytes([data[0] ^ 1]) + data[1:])
    _shard(built, 3).write_bytes(b"")
    assert verify_main([str(built)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{_shard(built, 1)}: checksum crc32 ")
    assert lines[1].startswith(f"{_shard(built, 3)}: 0 bytes, expected ")


def test_verify_corpus_without_recorded_checksums_checks_sizes(built, capsys):
    meta = json.loads((built / "meta.json").read_text())
    del meta["shard_crc32"]  # written before checksums were recorded: still opens, verify says what it checked
    (built / "meta.json").write_text(json.dumps(meta))
    store.open_corpus(built)
    assert verify_main([str(built)]) == 0
    assert "sizes only" in capsys.readouterr().out


def test_verify_not_a_corpus(tmp_path):
    with pytest.raises(CorpusError, match="not a finished corpus"):
        verify_main([str(tmp_path)])


# -- workers die with a SIGKILLed parent -----------------------------------------------------------
def test_killed_build_leaves_no_orphan_workers(tmp_cache, tmp_path):
    """SIGKILL a real 2-worker build while both workers generate: the workers (and the resource tracker) end."""
    script = ("from _faults_helpers import SlowShards\nfrom hierlatent.corpora import store\n"
              "store.build_corpus(SlowShards(), workers=2, progress=False)\n")
    kill_when_busy_and_check([sys.executable, "-c", script], tmp_path, "both workers to start a shard")
    root = store.corpus_dir(SlowShards())
    assert not list(root.glob("train/shard-*.bin"))  # nobody finished (or will finish) a blocked shard


def test_killed_training_process_leaves_no_dataloader_workers(tmp_path):
    """DataLoader workers blocked in a read die with their SIGKILLed parent (torch's own check waits for the read)."""
    script = (
        "import os, time\n"
        "from hltest import RandomTokens\n"
        "from hierlatent.data import CorpusDataModule, TokenWindows, RawWindows\n"
        "def blocked(self, offsets):\n"
        "    open(os.path.join(os.environ['HL_FAULT_MARKS'], f'{os.getpid()}.started'), 'w').close()\n"
        "    time.sleep(120)\n"
        "RawWindows.__getitems__ = blocked\n"
        "gen = RandomTokens()\n"
        "dm = CorpusDataModule(gen, context_window=16, batch_size=4, num_workers=2)\n"
        "dm.attach(TokenWindows.from_arrays([gen.generate_shard('train', 0)], 16),\n"
        "          TokenWindows.from_arrays([gen.generate_shard('test', 0)], 16))\n"
        "next(iter(dm.train_dataloader()))  # blocks: both workers are inside a read\n"
    )
    kill_when_busy_and_check([sys.executable, "-c", script], tmp_path, "both loader workers to block")
