"""Training-set order and augmentation randomness that survive a restart.

Two pieces make the data stream of a run a pure function of ``(seed, epoch, position)``:

* :class:`ResumableSampler` shuffles with ``seed + epoch`` (as ``DistributedSampler``), gives
  each DDP rank its own shard, and can start an epoch part-way through (``resume(epoch,
  samples_done)``), so a run resumed from a mid-epoch checkpoint sees exactly the samples the
  interrupted run had not seen yet, in the same order.
* :class:`SeededDataset` runs each ``dataset[i]`` under a torch RNG seeded from ``(seed, epoch,
  i)``: random augmentations (scale jitter, flip, photometric, mosaic, mixup) do not depend on
  which worker loads the sample, how many workers there are, or what was loaded before.

The sampler yields ``(index, sample_seed, epoch)`` keys; :class:`SeededDataset` unpacks them and
hands the epoch to every wrapped dataset with a ``set_epoch`` method (in the worker process that
loads the sample, so epoch-dependent augmentation, such as closing the mosaic, needs no shared state).
:class:`EpochDataLoader` makes sure the sampler knows the epoch before it is asked for indices.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def default_seed() -> int:
    """The run's global seed (``seed_everything`` exports it), else 0 — the same on every rank."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class ResumableSampler(DistributedSampler):
    """Shuffled (or ordered) indices of one rank's shard, resumable part-way through an epoch.

    A ``DistributedSampler`` (so Lightning keeps it instead of injecting its own) that works with
    one process as well. ``set_epoch`` is called by Lightning at each epoch start.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=default_seed() if seed is None else int(seed),
            drop_last=drop_last,
        )
        self._resume: tuple[int, int] | None = None

    def resume(self, epoch: int, samples_done: int) -> None:
        """The next iteration over ``epoch`` skips this rank's first ``samples_done`` samples."""
        self._resume = (int(epoch), int(samples_done)) if samples_done > 0 else None

    def order(self) -> list[int]:
        """This rank's indices for the current epoch (padded/trimmed as ``DistributedSampler``)."""
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=generator).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[: self.total_size]
        else:
            padding = self.total_size - len(indices)
            indices += (indices * math.ceil(padding / max(len(indices), 1)))[:padding]
        return indices[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        indices = self.order()
        if self._resume is not None:
            epoch, done = self._resume
            if epoch == self.epoch:
                indices = indices[done:]
                self._resume = None
            elif epoch < self.epoch:
                self._resume = None  # an epoch-end checkpoint: nothing to skip any more
        for index in indices:
            yield index, sample_seed(self.seed, self.epoch, index), self.epoch


class SeededDataset(Dataset):
    """``dataset[i]`` under a torch RNG seeded per sample (for :class:`ResumableSampler` keys).

    Before loading, the key's epoch goes to each dataset of the wrapped chain (``.dataset``
    attributes) that has ``set_epoch``. The process's global RNG state is left as it was
    (``torch.random.fork_rng``). Plain integer indices are passed through unseeded.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int, int]) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed, epoch = key
        inner: Any = self.dataset
        while isinstance(inner, Dataset):
            if hasattr(inner, "set_epoch"):
                inner.set_epoch(epoch)
            inner = getattr(inner, "dataset", None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class _LazyIterator:
    """An iterator that creates the real one on the first ``next()``."""

    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start = start
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> _LazyIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


class EpochDataLoader(DataLoader):
    """A ``DataLoader`` whose worker processes ask the sampler for indices on the first ``next()``.

    A multi-worker ``DataLoader`` draws its first indices from the sampler as soon as ``iter()`` is
    called. Lightning creates the training iterator before it calls ``sampler.set_epoch`` for the
    epoch a resumed run continues in, so the first epoch after a resume would be shuffled as epoch
    0. Deferring the start until the first batch is requested makes the order follow the epoch.
    """

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return _LazyIterator(super().__iter__)
