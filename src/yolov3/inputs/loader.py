"""The training data pipeline: a seeded endless stream of samples, multi-scale batches, augmented
in worker processes, reproducible to the bit whatever the number of workers or ranks.

The stream: epoch e is a permutation of the dataset drawn from (seed, e); the epochs follow one
another without a gap, and minibatch ``step`` holds stream positions ``step * batch_size`` to
``(step + 1) * batch_size - 1`` (a minibatch may straddle two epochs; no image is dropped).
An iteration (one optimiser step, darknet's "batch") is ``subdivisions`` consecutive minibatches.
The input size of iteration i is drawn from (seed, i // interval) (darknet's multi-scale
training, ``random=1``; square, or of a fixed width / height with the improved recipe's
``data.aspect``). The augmentation of stream position p draws from a generator seeded
with (seed, p); its mosaic and mixup (the improved recipe, :class:`~yolov3.inputs.mix.Mix`)
from another, seeded with (seed, p) in a stream of their own, so that with both off the inputs
are darknet's, bit for bit. Every one of these is a pure function of its arguments, so that a
resumed run sees exactly the data of an uninterrupted one, and ``world_size`` ranks, each taking
its share of every minibatch, see together what one process sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from yolov3.datasets.sample import Sample
from yolov3.errors import DataError
from yolov3.inputs.augment import TrainTransform, Transform, spawn
from yolov3.inputs.mix import Mix, mixup, mosaic, random_subset
from yolov3.model.cfg import STRIDE

# Distinct seed streams, so that the data order, the sizes, the augmentation and the mixing of
# images never share random numbers.
_ORDER, _SCALE, _AUGMENT, _MIX = 0, 1, 2, 3
# How many following images are tried in place of one that cannot be read.
MAX_SUBSTITUTES = 16


def input_shape(size: int, aspect: float = 1.0, stride: int = STRIDE) -> tuple[int, int]:
    """(height, width) of a network input of ``size`` whose width / height is about
    ``aspect``: darknet's square ``(size, size)`` at 1; else ``size`` is the longer side and the
    shorter one ``size / aspect`` (or ``size * aspect`` below 1), rounded to a multiple of
    ``stride`` (at least one stride), so that a batch of photos of that shape is letterboxed
    with little padding."""
    if aspect == 1:
        return size, size
    short = max(stride, round(size / max(aspect, 1 / aspect) / stride) * stride)
    return (short, size) if aspect > 1 else (size, short)


@dataclass(frozen=True)
class MultiScale:
    """Darknet's multi-scale training: every ``interval`` iterations an input size drawn
    uniformly from ``min_size, min_size + step, ..., max_size``, all multiples of the network's
    stride, the input square (darknet's) or of width / height ``aspect`` (see
    :func:`input_shape`). ``MultiScale(416, 416)`` is a fixed input size. Built and checked by
    :class:`~yolov3.train.config.MultiscaleConfig`."""

    min_size: int = 320
    max_size: int = 608
    interval: int = 10
    step: int = STRIDE
    aspect: float = 1.0

    @property
    def sizes(self) -> tuple[int, ...]:
        """The sizes drawn from."""
        return tuple(range(self.min_size, self.max_size + 1, self.step))

    def size_at(self, seed: int, iteration: int) -> int:
        """The input side at ``iteration``: a pure function of (seed, iteration // interval)."""
        sizes = self.sizes
        rng = np.random.default_rng([seed, _SCALE, iteration // self.interval])
        return sizes[int(rng.integers(len(sizes)))] if len(sizes) > 1 else sizes[0]

    def shape_at(self, seed: int, iteration: int) -> tuple[int, int]:
        """(height, width) of the input at ``iteration``: :func:`input_shape` of
        :meth:`size_at`."""
        return input_shape(self.size_at(seed, iteration), self.aspect)


class SampleKey(NamedTuple):
    """What a worker needs to produce one training sample: the dataset ``index``, the stream
    ``position`` (which seeds its augmentation), its ``iteration`` and the ``input_hw``."""

    index: int
    position: int
    iteration: int
    input_hw: tuple[int, int]


def augment_rng(seed: int, position: int) -> np.random.Generator:
    """The generator of the augmentation at stream ``position``."""
    return np.random.default_rng([seed, _AUGMENT, position])


def mix_rng(seed: int, position: int) -> np.random.Generator:
    """The generator of the mosaic and mixup at stream ``position`` (see
    :class:`AugmentedDataset`)."""
    return np.random.default_rng([seed, _MIX, position])


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The data order of ``epoch``: a permutation of ``range(size)`` drawn from (seed, epoch)."""
    return np.random.default_rng([seed, _ORDER, epoch]).permutation(size)


class TrainBatchSampler(Sampler[list[SampleKey]]):
    """Minibatches of :class:`SampleKey` for this rank, from ``start_iteration`` on.

    ``batch_size`` is the global minibatch (all ranks together); each of ``world_size`` ranks
    takes a contiguous share of ``batch_size // world_size``. ``max_iterations`` ends the stream
    (None: endless).
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        multiscale: MultiScale | None = None,
        seed: int = 0,
        subdivisions: int = 1,
        start_iteration: int = 0,
        max_iterations: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if dataset_size < 1:
            raise DataError("the training dataset holds no image")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.multiscale = multiscale or MultiScale()
        self.seed, self.subdivisions = seed, subdivisions
        self.start_iteration, self.max_iterations = start_iteration, max_iterations
        self.rank, self.world_size = rank, world_size
        self._orders: dict[int, np.ndarray] = {}

    def input_hw(self, iteration: int) -> tuple[int, int]:
        """(height, width) of the input at ``iteration``."""
        return self.multiscale.shape_at(self.seed, iteration)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                del self._orders[min(self._orders)]
            self._orders[epoch] = epoch_order(self.seed, epoch, self.dataset_size)
        return self._orders[epoch]

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """The dataset indices at stream ``positions``."""
        epochs, offsets = np.divmod(positions, self.dataset_size)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            out[sel] = self._order(int(epoch))[offsets[sel]]
        return out

    def batch(self, step: int) -> list[SampleKey]:
        """This rank's share of minibatch ``step`` (counted from iteration 0)."""
        share = self.batch_size // self.world_size
        first = step * self.batch_size + self.rank * share
        positions = np.arange(first, first + share, dtype=np.int64)
        iteration = step // self.subdivisions
        hw = self.input_hw(iteration)
        return [SampleKey(int(i), int(p), iteration, hw)
                for i, p in zip(self.indices(positions), positions, strict=True)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        step = self.start_iteration * self.subdivisions
        end = None if self.max_iterations is None else self.max_iterations * self.subdivisions
        while end is None or step < end:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        if self.max_iterations is None:
            raise TypeError("an endless sampler (max_iterations=None) has no length")
        return max(self.max_iterations - self.start_iteration, 0) * self.subdivisions


class AugmentedDataset(Dataset):
    """A detection dataset seen through a transform: ``self[key]`` is the augmented sample of a
    :class:`SampleKey`, as ``(image (3, H, W), targets (n, 5), key, skipped)``.

    With ``mix`` (the improved recipe) the mix generator of the position (:func:`mix_rng`)
    decides whether its input is a mosaic and whether it is mixed up
    (:meth:`~yolov3.inputs.mix.Mix.plan`). A mosaic is built from the position's own image and
    three others (its centre drawn from the mix generator) and then augmented by ``transform``
    with the position's augmentation generator, as a single image would be. A mixup partner is
    built and augmented likewise, every draw from one generator spawned from the mix generator;
    the two inputs are blended (ratio from the mix generator) and, when they hold more than the
    transform's ``max_labels`` boxes together, a random ``max_labels`` of them kept (also from
    the mix generator). With ``mix`` None or all off nothing of this is drawn or done.

    An image that cannot be read (:class:`DataError`), the position's own or one mixed in, is
    replaced by the next readable one in dataset order, augmented with the same random draws,
    and its message returned in ``skipped``; after ``MAX_SUBSTITUTES`` unreadable images in a
    row the error is raised. ``key.index`` is returned as the position's own image actually
    used.
    """

    def __init__(self, dataset: Dataset, transform: Transform | None = None, seed: int = 0,
                 mix: Mix | None = None):
        self.dataset = dataset
        self.transform = TrainTransform() if transform is None else transform
        self.seed = seed
        self.mix = mix if mix is not None and mix.active else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> tuple[Tensor, Tensor, SampleKey, list[str]]:
        skipped: list[str] = []
        index, sample = self._read(key.index, skipped)
        rng = augment_rng(self.seed, key.position)
        if self.mix is None:
            image, targets = self.transform(sample, key.input_hw, rng)
        else:
            image, targets = self._mixed(self.mix, sample, key, rng, skipped)
        return image, targets, key._replace(index=index), skipped

    def _read(self, index: int, skipped: list[str]) -> tuple[int, Sample]:
        """Dataset image ``index``, or the next readable one (the messages of those that are
        not go into ``skipped``), and its index."""
        tries = min(MAX_SUBSTITUTES, len(self.dataset))
        for attempt in range(tries):
            at = (index + attempt) % len(self.dataset)
            try:
                return at, self.dataset[at]
            except DataError as exc:
                skipped.append(str(exc))
        raise DataError(f"{tries} images in a row could not be read, the last: {skipped[-1]}")

    def _mixed(self, mix: Mix, sample: Sample, key: SampleKey, rng: np.random.Generator,
               skipped: list[str]) -> tuple[Tensor, Tensor]:
        """The input of ``key`` with its mosaic and mixup (see the class docstring)."""
        generator = mix_rng(self.seed, key.position)
        plan = mix.plan(len(self.dataset), generator)
        others = [self._read(i, skipped)[1] for i in plan.others]
        main = self.transform(_compose([sample, *others], key.input_hw, generator),
                              key.input_hw, rng)
        if not plan.partner:
            return main
        partner_rng = spawn(generator)
        partner = _compose([self._read(i, skipped)[1] for i in plan.partner], key.input_hw,
                           partner_rng)
        image, targets = mixup(main, self.transform(partner, key.input_hw, partner_rng),
                               generator)
        return image, random_subset(targets, self.transform.max_labels, generator)


def _compose(samples: list[Sample], input_hw: tuple[int, int],
             rng: np.random.Generator) -> Sample:
    """The mosaic of four samples (its centre drawn from ``rng``), or the one sample."""
    return mosaic(samples, input_hw, rng) if len(samples) == 4 else samples[0]


@dataclass
class BatchInfo:
    """What a training batch is: its ``iteration``, ``input_hw``, the stream ``positions`` and
    dataset ``indices`` of its images, and the messages of the images ``skipped`` as unreadable
    (each replaced by another)."""

    iteration: int
    input_hw: tuple[int, int]
    positions: list[int]
    indices: list[int]
    skipped: list[str]


def collate(
    items: Sequence[tuple[Tensor, Tensor, SampleKey, list[str]]],
) -> tuple[Tensor, list[Tensor], BatchInfo]:
    """Stack the images to (B, 3, H, W); keep the targets as a list of (n_i, 5), one per image."""
    images, targets, keys, skipped = zip(*items, strict=True)
    info = BatchInfo(keys[0].iteration, keys[0].input_hw, [k.position for k in keys],
                     [k.index for k in keys], [m for s in skipped for m in s])
    return torch.stack(images), list(targets), info


class TrainLoader(DataLoader):
    """The training :class:`DataLoader`; ``skipped`` gathers, in the training process, the
    message of every image replaced because it could not be read (one per occurrence)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped: list[str] = []

    def __iter__(self) -> Iterator[tuple[Tensor, list[Tensor], BatchInfo]]:
        try:
            for images, targets, info in super().__iter__():
                self.skipped += info.skipped
                yield images, targets, info
        except Exception as exc:  # a worker's error: its own message, not torch's traceback
            original = worker_error(exc)
            if original is None:
                raise
            raise original from exc


_WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):\n"


def worker_error(exc: BaseException) -> BaseException | None:
    """The exception a data-loader worker raised, as it was raised there: torch re-raises it in
    the main process as the same type whose message is "Caught X in DataLoader worker process
    N. Original Traceback ..." followed by the worker's whole traceback; this is that type with
    the worker's own message alone. ``None`` when ``exc`` is not such a re-raised error (or its
    type cannot be made from a message)."""
    text, kind = str(exc), type(exc)
    if not (text.startswith(f"Caught {kind.__name__} ") and _WORKER_TRACEBACK in text):
        return None
    lines = text.split("\n")
    # The worker's exception is the first line at the margin after the last traceback header
    # (frames are indented); its message runs to the end.
    last = max(i for i, line in enumerate(lines) if line.endswith("Traceback (most recent call "
                                                                 "last):"))
    body = lines[last + 1:]
    first = next((i for i, line in enumerate(body) if line and not line.startswith(" ")), None)
    if first is None:
        return None
    message = "\n".join(body[first:]).rstrip()
    name = (kind.__qualname__ if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}")
    if message.startswith(f"{name}: "):
        message = message[len(name) + 2:]
    elif message == name:
        message = ""
    try:
        return kind(message)
    except Exception:
        return None


#: The most loader processes ``train.workers: auto`` starts for one training process: one
#: process of the loader decodes and augments 85 to 115 JPEGs a second at 416 to 608 (2-core
#: AMD EPYC Zen 4; benchmarks/dataloader.py, docs/experiments/loader-and-schedules-2026-12-07.md),
#: so 16 feed 1,400 to 1,800 images/s, about what one GPU trains yolov3 at; past that the
#: processes only cost memory.
MAX_AUTO_WORKERS = 16


def auto_workers(limit: int = MAX_AUTO_WORKERS) -> int:
    """Loader processes for one training process (``train.workers: auto``): one per core this
    process may run on (its CPU affinity, shared among the ``LOCAL_WORLD_SIZE`` processes that
    torchrun started on this machine), less the one that runs the network, at most ``limit``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return max(0, min(limit, (cores or 1) // local - 1))


def make_train_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    transform: Transform | None = None,
    multiscale: MultiScale | None = None,
    subdivisions: int = 1,
    workers: int = 0,
    seed: int = 0,
    start_iteration: int = 0,
    max_iterations: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    mix: Mix | None = None,
) -> TrainLoader:
    """The training loader over ``dataset`` (``dataset[i]`` a :class:`Sample`): yields
    ``(images (B, 3, H, W), targets [(n_i, 5)], BatchInfo)`` from ``start_iteration`` on, each
    iteration being ``subdivisions`` minibatches of ``batch_size // world_size`` images for this
    rank. ``transform`` defaults to darknet's augmentation, ``multiscale`` to 320..608 every 10
    iterations; ``mix`` (None: off) adds mosaic and mixup (see :class:`AugmentedDataset`).
    The whole run is one pass over the sampler, so ``workers`` > 0 worker processes live as long
    as that pass: they end when it is exhausted or its iterator is dropped (a stopped run)."""
    sampler = TrainBatchSampler(
        len(dataset), batch_size, multiscale=multiscale, seed=seed, subdivisions=subdivisions,
        start_iteration=start_iteration, max_iterations=max_iterations, rank=rank,
        world_size=world_size,
    )
    return TrainLoader(
        AugmentedDataset(dataset, transform, seed, mix),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin_memory,
    )
