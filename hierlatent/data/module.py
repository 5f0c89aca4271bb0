"""``CorpusDataModule``: fixed-length token windows from a generated corpus, sharded over DDP ranks and workers.

A split is the concatenation of its shard files (read through ``np.memmap``), so a window may span a shard
boundary. Training windows are ``context_window`` tokens long and either non-overlapping (``contiguous``:
the paper's HF ``group_texts`` chunks, visited in a seeded shuffled order) or at seeded random token
offsets (``random``). Epoch ``e`` is one pass of ``n_tokens // context_window`` windows.

Order. Window *position* ``p`` of epoch ``e`` (``p = 0, 1, ...``) is a pure function of (seed, e, p): a
keyed Feistel permutation of the window ids for ``contiguous`` (a bijection on ``[0, n)`` computed
per index, so nothing of size ``n`` is materialised — ``torch.randperm`` would need 0.9 GB per rank per
epoch for the ~110M windows of the paper-scale corpus), a keyed hash of ``p`` for ``random``. Global step
``s`` with world size ``W`` and per-device batch ``B`` uses positions ``[s·W·B, (s+1)·W·B)``, rank ``r``
the block ``[(s·W + r)·B, (s·W + r + 1)·B)``. So the global batch at step ``s`` is the same set of windows
whatever ``W`` is, as long as ``W·B`` is: the 2-process DDP run sees what a 1-process run with batch
``2B`` sees. Dataloader workers only fetch: the sampler runs in the main process and the ``DataLoader``
keeps batch order, so any ``num_workers`` gives the same batches.

Resume (public Lightning API only). On restore Lightning re-creates the train dataloader, expecting it to
yield only the rest of the epoch while ``len()`` stays the full epoch. ``state_dict()`` (which Lightning
stores in the checkpoint) records the next (epoch, global window position): the epoch of the sampler's
current iteration and the training batches taken from it, counted by the data module's own
``on_before_batch_transfer`` hook (Lightning calls it once for each batch it trains on, after any loader
prefetch, so workers reading ahead do not count); ``train_dataloader()`` hands it to one sampler, which
starts its first iteration there. Later epochs take their number from ``trainer.current_epoch``, not from
Lightning's ``set_epoch`` (which runs one ahead after a restore from an epoch-end checkpoint). Resuming
with another world size works when ``W·B`` divides the saved position.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from hierlatent.corpora.base import CorpusGenerator, check_int
from hierlatent.data.loaders import TrainLoader, WindowLoader
from hierlatent.data.samplers import EvalWindowSampler, TrainWindowSampler
from hierlatent.data.windows import TokenWindows, check_fills, first_windows, sample_windows
from hierlatent.errors import ConfigError

SAMPLINGS = ("contiguous", "random")


class CorpusDataModule(pl.LightningDataModule):
    """Token windows of a generated corpus for training (train split) and validation/test (test split)."""

    def __init__(
        self,
        generator: CorpusGenerator,
        context_window: int = 512,
        batch_size: int = 8,
        sampling: Literal["contiguous", "random"] = "contiguous",
        num_workers: int = 0,
        seed: int = 0,
        generation_workers: int = 0,
        val_windows: int | None = None,
        pin_memory: bool = False,
        drop_last: bool = True,
    ) -> None:
        """
        Args:
            generator: the corpus recipe (``class_path`` + ``init_args``); the corpus is generated once and cached.
            context_window: tokens per training/validation window (the model's sequence length).
            batch_size: windows per batch per device (the global batch is world_size × batch_size).
            sampling: ``contiguous``: non-overlapping windows in a seeded shuffled order; ``random``: windows at seeded random token offsets.
            num_workers: dataloader worker processes per device (0 = load in the main process).
            seed: seed of the window order (epoch e uses a permutation keyed by seed and e).
            generation_workers: processes for corpus generation (0 = all cores).
            val_windows: cap on the validation/test windows taken from the test split (None = all).
            pin_memory: pin batches in page-locked memory (faster host-to-GPU copies).
            drop_last: drop the last incomplete global batch of an epoch.
        """
        super().__init__()
        if not isinstance(generator, CorpusGenerator):
            raise ConfigError(f"data.generator: must be a CorpusGenerator, got {type(generator).__name__}")
        self.generator = generator
        self.context_window = check_int("data.context_window", context_window, minimum=1)
        self.batch_size = check_int("data.batch_size", batch_size, minimum=1)
        if sampling not in SAMPLINGS:
            raise ConfigError(f"data.sampling: must be one of {SAMPLINGS}, got {sampling!r}")
        self.sampling = sampling
        self.num_workers = check_int("data.num_workers", num_workers, minimum=0)
        self.seed = check_int("data.seed", seed, minimum=0)
        self.generation_workers = check_int("data.generation_workers", generation_workers, minimum=0)
        self.val_windows = None if val_windows is None else check_int("data.val_windows", val_windows, minimum=1)
        for name, value in (("pin_memory", pin_memory), ("drop_last", drop_last)):
            if not isinstance(value, bool):
                raise ConfigError(f"data.{name}: must be true or false, got {value!r}")
        self.pin_memory, self.drop_last = pin_memory, drop_last
        vocabulary = generator.vocabulary()
        self.vocab_size: int = vocabulary.size
        self.special: dict[str, int] = dict(vocabulary.special)
        # No save_hyperparameters(): Lightning refuses to start when the module and the data module log the
        # same key (context_window, seed) with different values; LightningCLI saves the full config anyway.
        self._corpus: Any = None
        self.train_windows: TokenWindows | None = None
        self.test_windows: TokenWindows | None = None
        self._resume: tuple[int, int] | None = None  # (epoch, global window position) from a checkpoint
        self._train_sampler: TrainWindowSampler | None = None
        # (sampler, its epoch, training batches taken in that epoch): where the sampler's iteration started
        # (a restored position), and how far training has got since (on_before_batch_transfer)
        self._started: tuple[TrainWindowSampler, int, int] | None = None
        self._taken: tuple[TrainWindowSampler, int | None, int] | None = None

    # -- corpus ---------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the corpus into the cache (instant when it already exists). Lightning runs it once per node."""
        if self.train_windows is not None:  # windows already attached (``attach``): nothing to build
            return
        from hierlatent.corpora.store import build_corpus

        build_corpus(self.generator, workers=self.generation_workers)

    def setup(self, stage: str | None = None) -> None:
        """Open the corpus and check it fills at least one window per rank for train and for validation.

        Args:
            stage: Lightning stage (``fit``, ``validate``, ``test``, ``predict``); all open both splits.
        """
        if self.train_windows is None:
            from hierlatent.corpora.store import corpus_dir, open_corpus

            corpus = open_corpus(corpus_dir(self.generator))
            if corpus.vocab_size != self.vocab_size:
                raise ConfigError(
                    f"data.generator: corpus at {corpus.path} has vocab_size {corpus.vocab_size}, generator says {self.vocab_size}"
                )
            self.attach(
                TokenWindows.from_corpus(corpus, "train", self.context_window),
                TokenWindows.from_corpus(corpus, "test", self.context_window),
                corpus,
            )
        self._check_fits(self.train_windows, self.test_windows)  # again: the world size may have changed

    def attach(self, train: TokenWindows, test: TokenWindows, corpus: Any = None) -> None:
        """Use the given windows (``setup`` calls this with the opened corpus; tests may pass arrays).

        Args:
            train: windows over the train split.
            test: windows over the test split (validation, test and held-out windows).
            corpus: the ``Corpus`` they come from, if any.
        """
        self._check_fits(train, test)
        self._corpus, self.train_windows, self.test_windows = corpus, train, test

    def _check_fits(self, train: TokenWindows, test: TokenWindows) -> None:
        check_fills(train.n_tokens, test.n_tokens, self.context_window, world=self._world()[0],
                    batch_size=self.batch_size, drop_last=self.drop_last, val_windows=self.val_windows)

    @property
    def corpus(self) -> Any:
        """The opened ``hierlatent.corpora.store.Corpus`` (after ``setup``)."""
        self._require_setup()
        return self._corpus

    @property
    def reference_losses(self) -> dict[str, float]:
        """Best achievable losses (nats/token) recorded in the corpus meta (after ``setup``; {} without a corpus)."""
        corpus = self.corpus
        return {} if corpus is None else dict(corpus.reference_losses)

    # -- dataloaders -----------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Training windows, this rank's share of each global batch, starting where a restored checkpoint stopped."""
        self._require_setup()
        world, rank = self._world()
        epoch, position = self._resume or (0, 0)
        if position % (world * self.batch_size):
            raise ConfigError(
                f"data.batch_size: the checkpoint stopped at window {position} of epoch {epoch}, not a multiple of the"
                f" global batch {world}×{self.batch_size}; resume with the same world_size × batch_size"
            )
        self._train_sampler = TrainWindowSampler(
            self.train_windows.n_tokens, self.context_window, self.batch_size, sampling=self.sampling,
            seed=self.seed, num_replicas=world, rank=rank, drop_last=self.drop_last, epoch=epoch,
            start_position=position, epoch_source=self._trainer_epoch,
        )
        self._resume = None  # handed to this sampler; a reloaded dataloader (next epoch) must not replay it
        self._started = (self._train_sampler, epoch, position // (world * self.batch_size))
        return self._loader(self.train_windows, self._train_sampler, TrainLoader)

    def val_dataloader(self) -> DataLoader:
        """Evenly spaced non-overlapping windows of the test split (capped by ``val_windows``), dealt to ranks."""
        self._require_setup()
        world, rank = self._world()
        sampler = EvalWindowSampler(self.test_windows.n_tokens, self.context_window, self.val_windows, world, rank)
        return self._loader(self.test_windows, sampler)

    def test_dataloader(self) -> DataLoader:
        """Same windows as ``val_dataloader``."""
        return self.val_dataloader()

    def _loader(self, windows: TokenWindows, sampler: Any, cls: type[WindowLoader] = WindowLoader) -> WindowLoader:
        return cls(
            windows, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
        )

    def heldout_windows(self, n: int, seed: int, offsets: Literal["random", "first"] = "random") -> torch.Tensor:
        """``n`` windows of the test split (identical on every rank): LongTensor[n, T].

        Args:
            n: number of windows.
            seed: seed of the offsets ("random" only).
            offsets: "random" = seeded random offsets; "first" = the first n consecutive windows (research code).
        """
        self._require_setup()
        n = check_int("n", n, minimum=1)
        return first_windows(self.test_windows, n) if offsets == "first" else sample_windows(self.test_windows, n, seed)

    # -- resume ----------------------------------------------------------------------------------------
    def teardown(self, stage: str | None = None) -> None:
        """Forget a restored position once its fit is over (a later ``fit`` without a checkpoint starts fresh).

        Args:
            stage: Lightning stage that ended.
        """
        if stage == "fit":
            self._resume = None

    def state_dict(self) -> dict[str, Any]:
        """Where the next training batch starts: ``{"epoch", "position" (global window index), ...}``."""
        nxt = self._next_position()
        if nxt is None:
            return {}
        world, _ = self._world()
        return {"epoch": nxt[0], "position": nxt[1], "global_batch": world * self.batch_size,
                "seed": self.seed, "sampling": self.sampling, "context_window": self.context_window}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training position saved by ``state_dict`` (Lightning calls it before ``train_dataloader``).

        Args:
            state_dict: the dict returned by ``state_dict``.
        """
        if state_dict:
            self._resume = (int(state_dict["epoch"]), int(state_dict["position"]))

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the training batches the fit loop takes (Lightning calls this once for each batch it trains on).

        Args:
            batch: the batch, returned unchanged.
            dataloader_idx: index of its dataloader.
        """
        if self.trainer is not None and self.trainer.training:
            sampler = self._fit_sampler()
            if isinstance(sampler, TrainWindowSampler):
                self._taken = (sampler, sampler.iter_epoch, self._batches_taken(sampler) + 1)
        return batch

    def _fit_sampler(self) -> Any:
        """The sampler of the loader the fit loop really iterates (not one made by a stray call)."""
        if self.trainer is None:
            return self._train_sampler
        return getattr(self.trainer.train_dataloader, "sampler", self._train_sampler)

    def _batches_taken(self, sampler: TrainWindowSampler) -> int:
        """Training batches taken from ``sampler``'s current epoch, the restored start included."""
        for record in (self._taken, self._started):
            if record is not None and record[0] is sampler and record[1] == sampler.iter_epoch:
                return record[2]
        return 0

    def _next_position(self) -> tuple[int, int] | None:
        sampler = self._fit_sampler()
        if not isinstance(sampler, TrainWindowSampler):
            return self._resume
        if self.trainer is None or sampler.iter_epoch is None:
            return sampler.pending_start() or self._resume
        # The epoch is the sampler's (Lightning's epoch counters disagree with each other after restarts, see
        # TrainWindowSampler.__iter__); a finished epoch resumes at the start of the next one.
        done = self._batches_taken(sampler)
        if done >= self.trainer.num_training_batches:
            return sampler.iter_epoch + 1, 0
        return sampler.iter_epoch, done * sampler.num_replicas * self.batch_size

    def _trainer_epoch(self) -> int | None:
        return None if self.trainer is None else self.trainer.current_epoch

    # -- helpers ---------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _require_setup(self) -> None:
        if self.train_windows is None:
            raise RuntimeError("CorpusDataModule: call prepare_data() and setup() first")

