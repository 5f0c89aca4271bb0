"""Data pipeline: keyed permutation, window reading across shards, rank/worker sharding, resume, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _data_helpers import TEST_BASE, TRAIN_SHARDS, PositionCorpus, attached_module, fit_recorder, split_arrays
from hierlatent._splitmix import epoch_key, feistel_permutation, random_offsets
from hierlatent.data import CorpusDataModule, EvalWindowSampler, TokenWindows, TrainWindowSampler
from hierlatent.errors import ConfigError

N_TRAIN = sum(TRAIN_SHARDS)


# -- keyed permutation ------------------------------------------------------------------------------
def _feistel_reference(x: int, n: int, key: int) -> int:
    """Scalar pure-Python Feistel + cycle walking (Python ints, explicit masks): the oracle."""
    m64 = (1 << 64) - 1

    def mix(z: int) -> int:
        z = (z + 0x9E3779B97F4A7C15) & m64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m64
        return z ^ (z >> 31)

    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    keys = [mix(key + i) for i in range(6)]
    while True:
        left, right = x >> half, x & mask
        for k in keys:
            left, right = right, left ^ (mix(right ^ k) & mask)
        x = (left << half) | right
        if x < n:
            return x


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 100, 1000, 4097])
def test_feistel_is_a_permutation_and_matches_reference(n):
    key = epoch_key(3, 1, 0)
    perm = feistel_permutation(np.arange(n), n, key)
    assert sorted(perm.tolist()) == list(range(n))
    sample = np.arange(0, n, max(1, n // 50))
    assert perm[sample].tolist() == [_feistel_reference(int(x), n, key) for x in sample]


def test_feistel_depends_on_key_and_shuffles():
    n = 1000
    a = feistel_permutation(np.arange(n), n, epoch_key(0, 0, 0))
    b = feistel_permutation(np.arange(n), n, epoch_key(0, 1, 0))
    c = feistel_permutation(np.arange(n), n, epoch_key(1, 0, 0))
    assert (a != b).mean() > 0.9 and (a != c).mean() > 0.9
    # a shuffle, not a near-identity: few fixed points and no strong correlation with the index
    assert (a == np.arange(n)).sum() < 10
    assert abs(np.corrcoef(a, np.arange(n))[0, 1]) < 0.15


def test_random_offsets_in_range_and_spread():
    off = random_offsets(np.arange(20000), 777, epoch_key(0, 0, 1))
    assert off.min() >= 0 and off.max() < 777
    counts = np.bincount(off, minlength=777)
    assert counts.min() > 0  # ~26 expected per offset


# -- reading windows ----------------------------------------------------------------------------------
def test_window_contents_equal_concatenated_split_across_shards():
    arrays = split_arrays("train")
    concat = np.concatenate(arrays)
    windows = TokenWindows.from_arrays(arrays, 64)
    offsets = [0, 650, 690, 700, 1990, 2001, N_TRAIN - 64]  # 650..714 spans the 700 boundary and the empty shard
    got = windows.read(offsets)
    assert got.shape == (len(offsets), 64)
    for row, off in zip(got, offsets):
        np.testing.assert_array_equal(row, concat[off : off + 64])
    batch = windows.__getitems__(offsets)
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (len(offsets), 64)
    assert len(windows) == N_TRAIN // 64
    with pytest.raises(IndexError):
        windows.read([N_TRAIN - 63])


def test_memmap_shards_pickle_without_memmaps(tmp_path):
    import pickle

    paths = []
    for i, a in enumerate(split_arrays("train")):
        paths.append(tmp_path / f"shard-{i}.bin")
        a.tofile(paths[-1])

    windows = TokenWindows.from_files(paths, np.uint16, 32)
    assert windows.n_tokens == N_TRAIN
    assert windows.read([690])[0, 0] == 690
    clone = pickle.loads(pickle.dumps(windows))
    assert clone._shards is None and clone.read([690])[0].tolist() == list(range(690, 722))


# -- samplers -------------------------------------------------------------------------------------------
def _epoch(sampler: TrainWindowSampler, epoch: int = 0) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_contiguous_epoch_visits_every_window_once():
    T = 16
    s = TrainWindowSampler(N_TRAIN, T, 5, drop_last=False, seed=1)
    offs = _epoch(s)
    assert len(offs) == len(s) == N_TRAIN // T
    assert sorted(offs) == list(range(0, (N_TRAIN // T) * T, T))
    assert offs != sorted(offs)  # shuffled
    assert _epoch(s, 1) != offs and sorted(_epoch(s, 1)) == sorted(offs)
    assert _epoch(s, 0) == offs  # deterministic per (seed, epoch)
    assert _epoch(TrainWindowSampler(N_TRAIN, T, 5, drop_last=False, seed=2)) != offs


def test_random_sampling_uses_arbitrary_offsets():
    T = 16
    s = TrainWindowSampler(N_TRAIN, T, 4, sampling="random", seed=0)
    offs = _epoch(s)
    assert len(offs) == (N_TRAIN // T) // 4 * 4
    assert min(offs) >= 0 and max(offs) <= N_TRAIN - T
    assert sum(o % T != 0 for o in offs) > len(offs) // 2  # not aligned to the window grid
    assert _epoch(s, 0) == offs and _epoch(s, 1) != offs


@pytest.mark.parametrize("sampling", ["contiguous", "random"])
@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_disjoint_and_global_batch_matches_single_device(sampling, drop_last):
    T, B, W = 16, 3, 2
    single = TrainWindowSampler(N_TRAIN, T, W * B, sampling=sampling, seed=5, drop_last=drop_last)
    ranks = [
        TrainWindowSampler(N_TRAIN, T, B, sampling=sampling, seed=5, num_replicas=W, rank=r, drop_last=drop_last)
        for r in range(W)
    ]
    assert len({len(r) for r in ranks}) == 1  # every rank runs the same number of steps
    batches_single = _batches(list(single), W * B)
    batches_ranks = [_batches(list(r), B) for r in ranks]
    assert len(batches_single) == len(batches_ranks[0])
    for step, global_batch in enumerate(batches_single):
        parts = [b[step] for b in batches_ranks]
        union = parts[0] + parts[1]
        if drop_last or step < len(batches_single) - 1:
            assert sorted(union) == sorted(global_batch)
            if sampling == "contiguous":
                assert not set(parts[0]) & set(parts[1])
        else:  # the incomplete last batch is split evenly; padding repeats windows from the epoch start
            assert set(global_batch) <= set(union) and abs(len(parts[0]) - len(parts[1])) == 0


def _batches(offsets: list[int], size: int) -> list[list[int]]:
    return [offsets[i : i + size] for i in range(0, len(offsets), size)]


def test_sampler_resume_starts_mid_epoch_once():
    T, B = 16, 4
    full = list(TrainWindowSampler(N_TRAIN, T, B, seed=3))
    resumed = TrainWindowSampler(N_TRAIN, T, B, seed=3, epoch=0, start_position=5 * B)
    assert len(resumed) == len(full)  # Lightning's epoch length is unchanged
    assert list(resumed) == full[5 * B :]
    assert list(resumed) == full  # the start applies to the first iteration only
    with pytest.raises(ValueError):
        TrainWindowSampler(N_TRAIN, T, B, start_position=3)


def test_eval_sampler_spreads_and_shards_without_duplicates():
    T = 16
    one = list(EvalWindowSampler(1123, T, n=None))
    assert one == [i * T for i in range(1123 // T)]
    ranks = [list(EvalWindowSampler(1123, T, n=31, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 15
    assert not set(ranks[0]) & set(ranks[1])
    everything = sorted(ranks[0] + ranks[1])
    assert everything[0] == 0 and everything[-1] > 1123 - 4 * T  # spread over the whole split


# -- the data module ---------------------------------------------------------------------------------------
def test_construction_is_cheap_and_exposes_vocabulary():
    dm = CorpusDataModule(PositionCorpus(), context_window=16, batch_size=4)
    vocab = PositionCorpus().vocabulary()
    assert dm.vocab_size == vocab.size and dm.special == vocab.special
    assert dm.train_windows is None  # nothing generated or opened
    with pytest.raises(RuntimeError):
        dm.train_dataloader()


def test_train_batches_are_windows_of_the_split():
    dm = attached_module(context_window=16, batch_size=4, seed=7)
    concat = np.concatenate(split_arrays("train"))
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) == (N_TRAIN // 16) // 4
    for batch in batches:
        ids = batch["input_ids"]
        assert ids.shape == (4, 16) and ids.dtype == torch.long
        for row in ids.numpy():
            np.testing.assert_array_equal(row, concat[row[0] : row[0] + 16])


@pytest.mark.parametrize("sampling", ["contiguous", "random"])
def test_two_workers_give_the_same_batches_as_zero(sampling):
    kw = dict(context_window=16, batch_size=4, sampling=sampling, seed=11)
    plain = [b["input_ids"] for b in attached_module(num_workers=0, **kw).train_dataloader()]
    loader = attached_module(num_workers=2, **kw).train_dataloader()
    assert loader.persistent_workers
    workers = [b["input_ids"] for b in loader]
    loader._iterator._shutdown_workers()  # persistent workers: stop them now, not at some later garbage collection
    assert len(plain) == len(workers)
    assert all(torch.equal(a, b) for a, b in zip(plain, workers))


def test_val_dataloader_capped_and_heldout_windows_seeded():
    dm = attached_module(context_window=16, batch_size=4, val_windows=10)
    val = torch.cat([b["input_ids"] for b in dm.val_dataloader()])
    assert val.shape == (10, 16) and (val[:, 0] >= TEST_BASE).all()
    assert torch.equal(val[:, 1:] - val[:, :-1], torch.ones(10, 15, dtype=torch.long))
    held = dm.heldout_windows(100, seed=3)
    assert held.shape == (100, 16) and held.dtype == torch.long and (held >= TEST_BASE).all()
    assert torch.equal(held, dm.heldout_windows(100, seed=3))
    assert not torch.equal(held, dm.heldout_windows(100, seed=4))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(context_window=0), "data.context_window"),
        (dict(context_window=2.5), "data.context_window"),
        (dict(batch_size=0), "data.batch_size"),
        (dict(sampling="strided"), "data.sampling"),
        (dict(num_workers=-1), "data.num_workers"),
        (dict(seed=-2), "data.seed"),
        (dict(generation_workers=-1), "data.generation_workers"),
        (dict(val_windows=0), "data.val_windows"),
        (dict(drop_last="yes"), "data.drop_last"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        CorpusDataModule(PositionCorpus(), **kwargs)


def test_bad_generator_and_too_small_corpus():
    with pytest.raises(ConfigError, match="data.generator"):
        CorpusDataModule(object())
    with pytest.raises(ConfigError, match="data.context_window"):
        attached_module(context_window=2048, batch_size=1)  # the 1123-token test split has no window
    with pytest.raises(ConfigError, match="data.context_window"):
        attached_module(context_window=512, batch_size=8)  # 5 train windows < one batch of 8



@pytest.mark.parametrize(
    "train, test, kw, flag",  # flag: which of (context window, batch size, val windows) the error names
    [
        (5 * 512, 4 * 512, dict(batch_size=8), 0),  # 5 windows < one batch of 8
        (8 * 512, 4 * 512, dict(batch_size=8), None),  # exactly one batch, one validation window per rank
        (8 * 512 - 1, 4 * 512, dict(batch_size=8), 0),  # one token short of the 8th window
        (5 * 512, 4 * 512, dict(batch_size=8, drop_last=False), None),  # a partial batch is enough
        (16 * 512, 4 * 512, dict(batch_size=4, world=4), None),
        (16 * 512, 3 * 512, dict(batch_size=4, world=4), 0),  # 3 test windows for 4 ranks
        (16 * 512, 4 * 512, dict(batch_size=4, world=4, val_windows=2), 2),  # capped below one per rank
    ],
)
def test_check_fills_one_batch_and_one_val_window_per_rank(train, test, kw, flag):
    from hierlatent.data.windows import CLI_FLAGS, DATA_FLAGS, check_fills

    for expected, flags in ((False, DATA_FLAGS), (True, CLI_FLAGS)):  # the data module's rule and the CLI's are one
        call = dict({"world": 1, **kw}, expected=expected, flags=flags)
        if flag is None:
            check_fills(train, test, 512, **call)
            continue
        with pytest.raises(ConfigError, match=f"^{flags[flag]}: .*{'expected to hold ~' if expected else 'holds'}"):
            check_fills(train, test, 512, **call)

# -- mid-epoch resume through a real Lightning Trainer -------------------------------------------------------
@pytest.mark.parametrize("sampling, num_workers", [("contiguous", 0), ("random", 0), ("contiguous", 2)])
def test_resume_mid_epoch_continues_exactly(tmp_path, sampling, num_workers):
    # 46 windows: 11 batches per epoch; workers start iterating (prefetch) before Lightning's restart bookkeeping
    kw = dict(context_window=64, batch_size=4, sampling=sampling, seed=2, num_workers=num_workers)
    full = fit_recorder(tmp_path, attached_module(**kw), max_steps=25, save=True)
    assert len(full) == 25
    flat_epoch0 = [o for step in full[:11] for o in step]
    assert len(set(flat_epoch0)) == 44 or sampling == "random"  # no window twice within an epoch
    assert full[:11] != full[11:22]  # a new order each epoch
    points = {"steps/epoch=0-step=4.ckpt": 4, "steps/epoch=0-step=11.ckpt": 11, "ends/end-epoch=0.ckpt": 11,
              "steps/epoch=1-step=15.ckpt": 15}
    if sampling == "random":
        points = {"steps/epoch=1-step=15.ckpt": 15}
    if num_workers:
        points = {"steps/epoch=0-step=4.ckpt": 4, "ends/end-epoch=0.ckpt": 11}
    for name, k in points.items():
        resumed = fit_recorder(tmp_path / "resumed", attached_module(**kw), max_steps=25, ckpt_path=tmp_path / name)
        assert resumed == full[k:], name


def test_jsonargparse_schema_from_signature():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(CorpusDataModule, "data")
    cfg = parser.parse_args(["--data.generator", "_data_helpers.PositionCorpus", "--data.context_window", "16",
                             "--data.val_windows", "5", "--data.sampling", "random"])
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm.generator, PositionCorpus)
    assert (dm.context_window, dm.val_windows, dm.sampling) == (16, 5, "random")
    assert dm.vocab_size == PositionCorpus().vocabulary().size  # what the CLI links to model.vocab_size


def test_state_dict_round_trip_without_trainer():
    dm = attached_module(context_window=64, batch_size=4)
    assert dm.state_dict() == {}
    dm.load_state_dict({"epoch": 1, "position": 8, "global_batch": 4})
    assert dm.state_dict()["epoch"] == 1 and dm.state_dict()["position"] == 8
    first = next(iter(dm.train_dataloader()))["input_ids"][:, 0].tolist()
    expect = TrainWindowSampler(N_TRAIN, 64, 4, seed=0, epoch=1)
    assert first == list(expect)[8:12]
    dm.teardown("fit")
    assert dm.state_dict() == {}
    dm.load_state_dict({"epoch": 0, "position": 6})
    with pytest.raises(ConfigError, match="data.batch_size"):
        dm.train_dataloader()


def test_resume_from_mid_epoch_validation_checkpoints(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    kw = dict(context_window=64, batch_size=4, seed=4)
    saver = ModelCheckpoint(dirpath=tmp_path / "val", filename="{step}", save_top_k=-1)  # saves on validation end
    full = fit_recorder(tmp_path, attached_module(**kw), max_steps=25, callbacks=[saver], val_check_interval=5)
    for k in (5, 16):  # mid epoch 0, mid epoch 1
        resumed = fit_recorder(tmp_path / "r", attached_module(**kw), max_steps=25, ckpt_path=tmp_path / "val" / f"step={k}.ckpt",
                       val_check_interval=5)
        assert resumed == full[k:], k


def test_resume_unaffected_by_a_stray_train_dataloader_call(tmp_path):
    import lightning.pytorch as pl

    class Stray(pl.Callback):  # e.g. a user callback peeking at the data mid-training
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                trainer.datamodule.train_dataloader()  # built, never iterated

    kw = dict(context_window=64, batch_size=4, seed=6)
    full = fit_recorder(tmp_path, attached_module(**kw), max_steps=8, save=True, callbacks=[Stray()])
    resumed = fit_recorder(tmp_path / "r", attached_module(**kw), max_steps=8,
                           ckpt_path=tmp_path / "steps" / "epoch=0-step=4.ckpt")
    assert resumed == full[4:]


def test_resume_with_dataloaders_reloaded_every_epoch(tmp_path):
    kw = dict(context_window=64, batch_size=4, seed=8)
    full = fit_recorder(tmp_path, attached_module(**kw), max_steps=25, save=True, reload_dataloaders_every_n_epochs=1)
    assert full == fit_recorder(tmp_path / "plain", attached_module(**kw), max_steps=25)  # same order as no reloads
    resumed = fit_recorder(tmp_path / "r", attached_module(**kw), max_steps=25, reload_dataloaders_every_n_epochs=1,
                           ckpt_path=tmp_path / "steps" / "epoch=0-step=4.ckpt")
    assert resumed == full[4:]


# -- end to end through the corpus store -----------------------------------------------------------------------
def test_end_to_end_through_the_corpus_store(tmp_path, monkeypatch):
    store = pytest.importorskip("hierlatent.corpora.store")  # lands separately (issue: corpus store)
    monkeypatch.setenv("HIERLATENT_CACHE", str(tmp_path))
    dm = CorpusDataModule(PositionCorpus(), context_window=64, batch_size=4, generation_workers=1, val_windows=9)
    dm.prepare_data()
    meta = store.corpus_dir(dm.generator) / "meta.json"
    stamp = meta.stat().st_mtime_ns
    dm.prepare_data()  # the corpus exists: nothing is rebuilt
    assert meta.stat().st_mtime_ns == stamp
    dm.setup("fit")
    assert dm.corpus.n_tokens("train") == N_TRAIN and dm.reference_losses == {"zero": 0.0}
    assert dm.vocab_size == dm.corpus.vocab_size
    concat = np.concatenate(split_arrays("train"))
    offsets = []
    for batch in dm.train_dataloader():  # read through the store's memmaps, across shard boundaries
        for row in batch["input_ids"].numpy():
            np.testing.assert_array_equal(row, concat[row[0] : row[0] + 64])
            offsets.append(int(row[0]))
    assert sorted(offsets) == sorted(set(offsets)) and len(offsets) == (N_TRAIN // 64) // 4 * 4
    val = torch.cat([b["input_ids"] for b in dm.val_dataloader()])
    assert val.shape == (9, 64) and (val[:, 0] >= TEST_BASE).all()
    assert dm.heldout_windows(5, seed=0).shape == (5, 64)
    # workers reopen the store's memmaps lazily (the dataset pickles without them) and read the same batches
    dm2 = CorpusDataModule(PositionCorpus(), context_window=64, batch_size=4, num_workers=2)
    dm2.setup("fit")
    loader = dm2.train_dataloader()
    assert [b["input_ids"][:, 0].tolist() for b in loader] == [offsets[i : i + 4] for i in range(0, len(offsets), 4)]
    loader._iterator._shutdown_workers()
