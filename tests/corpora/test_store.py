"""The corpus store: format, determinism across worker counts, cache hits, resume, and failures before work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from hierlatent.corpora import store
from hierlatent.errors import CorpusError
from _fake import ContextCorpus, CountingCorpus


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HIERLATENT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/shard-*.bin"))}


def test_format_and_meta(cache):
    gen = CountingCorpus()
    corpus = store.build_corpus(gen, workers=1, progress=False)
    assert corpus.path == cache / "corpora" / gen.cache_name()
    meta = json.loads((corpus.path / "meta.json").read_text())
    for key in ("class_path", "init_args", "seed", "hierlatent_version", "dtype", "vocab_size", "special_tokens",
                "n_tokens", "reference_losses", "generation"):
        assert key in meta, key
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 53
    assert set(meta["n_tokens"]) == {"train", "test"}
    assert {"seconds", "tokens_per_second"} <= set(meta["generation"])
    expected = np.concatenate([gen.generate_shard("train", i) for i in range(4)])
    got = np.concatenate([np.fromfile(p, dtype="<u2") for p in corpus.shard_paths("train")])
    assert np.array_equal(got, expected) and corpus.n_tokens("train") == len(expected)
    assert np.array_equal(np.concatenate(corpus.memmaps("train")), expected)
    tok = AutoTokenizer.from_pretrained(str(corpus.tokenizer_dir))
    assert tok.convert_ids_to_tokens([0, 50, 51, 52]) == ["w0", "[EOS]", "[UNK]", "[PAD]"]
    assert tok("w3 w7 [EOS] nope")["input_ids"] == [3, 7, 50, 51]


def test_workers_give_identical_bytes_and_cache_hit_is_instant(cache, monkeypatch):
    one = _bytes(store.build_corpus(CountingCorpus(), workers=1, progress=False).path)
    shutil.rmtree(cache)
    corpus = store.build_corpus(CountingCorpus(), workers=2, progress=False)
    assert _bytes(corpus.path) == one
    monkeypatch.setattr(CountingCorpus, "generate_shard", lambda *a: pytest.fail("cache hit regenerated"))
    t0 = time.perf_counter()
    assert store.build_corpus(CountingCorpus(), workers=2, progress=False).path == corpus.path
    assert time.perf_counter() - t0 < 1.0


def test_different_config_different_directory(cache):
    assert store.corpus_dir(CountingCorpus(seed=1)) != store.corpus_dir(CountingCorpus(seed=2))


def test_unwritable_cache(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("HIERLATENT_CACHE", str(ro / "sub"))
    if os.access(ro, os.W_OK):
        pytest.skip("running as a user who can write anywhere")
    with pytest.raises(CorpusError, match="not writable.*HIERLATENT_CACHE"):
        store.build_corpus(CountingCorpus(), workers=1, progress=False)


def test_unwritable_cache_as_root(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("HIERLATENT_CACHE", str(blocker))
    with pytest.raises(CorpusError, match="not writable"):
        store.build_corpus(CountingCorpus(), workers=1, progress=False)


def test_disk_space_checked_before_work(cache, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: usage(10, 10, 10))
    monkeypatch.setattr(CountingCorpus, "generate_shard", lambda *a: pytest.fail("generated despite no space"))
    with pytest.raises(CorpusError, match="not enough disk space"):
        store.build_corpus(CountingCorpus(), workers=1, progress=False)


def test_disk_full_leaves_no_finished_corpus(cache, monkeypatch):
    real = store.atomic_write_bytes
    calls = []

    def full(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise CorpusError(f"disk full while writing {path}")
        real(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", full)
    gen = CountingCorpus()
    with pytest.raises(CorpusError, match="disk full"):
        store.build_corpus(gen, workers=1, progress=False)
    root = store.corpus_dir(gen)
    assert not (root / "meta.json").exists()
    assert not list(root.rglob("*.tmp"))
    with pytest.raises(CorpusError, match="not a finished corpus"):
        store.open_corpus(root)


def test_worker_error_surfaces(cache):
    with pytest.raises(CorpusError, match="shard 2 failed on purpose"):
        store.build_corpus(CountingCorpus(fail_shard=2), workers=2, progress=False)
    assert not (store.corpus_dir(CountingCorpus(fail_shard=2)) / "meta.json").exists()


def test_context_built_once_per_split_and_given_to_every_worker(cache, monkeypatch):
    """prepare_context runs in the building process, once per split; two workers each get it (or shards fail)."""
    monkeypatch.setattr(ContextCorpus, "calls", [])
    store.build_corpus(ContextCorpus(n_shards=3), workers=2, progress=False)
    assert ContextCorpus.calls == [("test", os.getpid()), ("train", os.getpid())]


@pytest.mark.slow  # a fresh process importing torch and Lightning (~15 s); the command form is checked in tests/sweep
def test_generation_workers_under_python_m_hierlatent_do_not_import_lightning(tmp_path, monkeypatch):
    """``python -m hierlatent generate`` (how sweeps start runs): spawned workers skip the ``__main__`` module.

    Each train token of ``ImportRecorder`` is 1 where the process writing it had Lightning imported: the
    parent has, a worker re-importing ``python -m hierlatent.cli`` as its main module would have.
    """
    import yaml

    from hltest import TESTS_DIR, tiny_fit_config

    cfg = tiny_fit_config(data={"generator": {"class_path": "hltest.ImportRecorder", "init_args": {"seed": 1}},
                                "batch_size": 4, "generation_workers": 2})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("HIERLATENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "hierlatent", "generate", "--config", "cfg.yaml"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (corpus,) = (tmp_path / "cache" / "corpora").iterdir()
    shards = sorted((corpus / "train").glob("shard-*.bin"))
    assert len(shards) == 4 and all(p.stat().st_size for p in shards)
    assert not any(np.fromfile(p, dtype="<u2").any() for p in shards)  # no worker had Lightning loaded


def test_resume_after_kill_keeps_shards_and_matches(cache, tmp_path):
    """Kill -9 a real generation process mid-way; the rerun keeps finished shards and gives the same bytes."""
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time\n"
        "from _fake import CountingCorpus\n"
        "from hierlatent.corpora import store\n"
        "real = CountingCorpus.generate_shard\n"
        "def slow(self, split, index, context=None):\n"
        "    if split == 'train' and index >= 2: time.sleep(120)\n"
        "    return real(self, split, index, context)\n"
        "CountingCorpus.generate_shard = slow\n"
        "store.build_corpus(CountingCorpus(), workers=1, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "HIERLATENT_CACHE": str(cache),
                                                             "PYTHONPATH": str(Path(__file__).parent)})
    root = store.corpus_dir(CountingCorpus())
    try:
        deadline = time.time() + 120
        while len(list(root.glob("train/shard-*.bin.json"))) < 2:  # sidecars: a shard is finished after its sidecar
            assert time.time() < deadline, "generation did not progress"
            assert proc.poll() is None, "generation process ended early"
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.wait()
    assert not (root / "meta.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in root.glob("*/shard-*.bin")}
    assert len(kept) == 3  # the test shard and two train shards
    corpus = store.build_corpus(CountingCorpus(), workers=2, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished shards were kept, not rewritten
    resumed = _bytes(corpus.path)
    shutil.rmtree(cache)
    assert _bytes(store.build_corpus(CountingCorpus(), workers=1, progress=False).path) == resumed


def test_resume_keeps_finished_shards(cache, monkeypatch):
    gen = CountingCorpus()
    real = CountingCorpus.generate_shard
    state = {"n": 0}

    def crash_after_two(self, split, index, context=None):
        if split == "train":
            state["n"] += 1
            if state["n"] > 2:
                raise KeyboardInterrupt  # as if killed
        return real(self, split, index, context)

    monkeypatch.setattr(CountingCorpus, "generate_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        store.build_corpus(gen, workers=1, progress=False)
    root = store.corpus_dir(gen)
    kept = {p.name: p.stat().st_mtime_ns for p in (root / "train").glob("shard-*.bin")}
    assert sorted(kept) == ["shard-00000.bin", "shard-00001.bin"]
    regenerated = []
    monkeypatch.setattr(CountingCorpus, "generate_shard",
                        lambda self, s, i, c=None: regenerated.append((s, i)) or real(self, s, i, c))
    corpus = store.build_corpus(gen, workers=1, progress=False)
    assert regenerated == [("train", 2), ("train", 3)]
    assert {p.name: p.stat().st_mtime_ns for p in (root / "train").glob("shard-0000[01].bin")} == kept
    shutil_root = corpus.path
    fresh = {k: v for k, v in _bytes(shutil_root).items()}
    shutil.rmtree(cache)
    assert _bytes(store.build_corpus(gen, workers=1, progress=False).path) == fresh


def test_damaged_corpus_named(cache):
    corpus = store.build_corpus(CountingCorpus(), workers=1, progress=False)
    corpus.shard_paths("train")[1].write_bytes(b"\x00")
    with pytest.raises(CorpusError, match="shard-00001.bin: corpus is damaged"):
        store.open_corpus(corpus.path)
