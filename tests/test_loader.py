"""The training data pipeline: multi-scale sizes, data order, resume, ranks, workers, bad
images."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from yolov3.datasets.open import open_dataset
from yolov3.datasets.synthetic import SyntheticShapes
from yolov3.errors import ConfigError, DataError
from yolov3.inputs.loader import (
    MultiScale,
    TrainBatchSampler,
    epoch_order,
    make_train_loader,
)
from yolov3.train.config import load_config
from yolov3.train.distributed import minibatch_per_process

SMALL = MultiScale(64, 160, interval=10)


def keys(sampler: TrainBatchSampler) -> list:
    return list(sampler)


def test_sizes_change_only_every_interval_and_cover_the_range():
    scale = MultiScale()
    sizes = [scale.size_at(seed=3, iteration=i) for i in range(2000)]
    assert set(sizes) == set(range(320, 609, 32))
    for i, s in enumerate(sizes):
        assert s == sizes[i - i % 10]
    blocks = sizes[::10]
    assert sum(a != b for a, b in itertools.pairwise(blocks)) > 150
    assert [scale.size_at(4, i) for i in range(0, 2000, 10)] != blocks  # seed matters
    assert MultiScale(416, 416).sizes == (416,)
    assert MultiScale(320, 416, step=64).sizes == (320, 384)


@pytest.mark.parametrize("bad", [(300, 608, 10), (320, 600, 10), (608, 320, 10), (320, 608, -1)])
def test_bad_multiscale_is_a_config_error_when_the_config_loads(bad):
    keys = ("min_size", "max_size", "interval")
    with pytest.raises(ConfigError, match="multiscale"):
        load_config(overrides=[f"multiscale.{k}={v}" for k, v in zip(keys, bad, strict=True)])


def test_the_multiscale_section_builds_the_sizes():
    sizes = load_config(overrides=["multiscale.min_size=320", "multiscale.max_size=416"])
    assert sizes.multiscale.build(608).sizes == (320, 352, 384, 416)
    fixed = load_config(overrides=["multiscale.interval=0"])
    assert fixed.multiscale.build(608).sizes == (608,)


def test_epochs_are_seeded_permutations_joined_without_gaps():
    sampler = TrainBatchSampler(10, 4, seed=5, max_iterations=5)
    indices = [k.index for batch in sampler for k in batch]
    assert len(indices) == 20
    assert indices[:10] == epoch_order(5, 0, 10).tolist()
    assert indices[10:20] == epoch_order(5, 1, 10).tolist()
    assert sorted(indices[:10]) == list(range(10)) and indices[:10] != indices[10:20]
    positions = [k.position for batch in sampler for k in batch]
    assert positions == list(range(20))


def test_resume_at_iteration_k_is_the_tail_of_an_uninterrupted_run():
    common = {"multiscale": SMALL, "seed": 9, "subdivisions": 3, "max_iterations": 40}
    full = keys(TrainBatchSampler(37, 6, **common))
    resumed = keys(TrainBatchSampler(37, 6, start_iteration=17, **common))
    assert resumed == full[17 * 3 :]
    assert len(full) == len(TrainBatchSampler(37, 6, **common)) == 120


def test_every_minibatch_of_an_iteration_shares_its_size():
    batches = keys(TrainBatchSampler(50, 4, multiscale=MultiScale(interval=2), subdivisions=4,
                                     max_iterations=30))
    for step, batch in enumerate(batches):
        assert {k.iteration for k in batch} == {step // 4}
        assert len({k.input_hw for k in batch}) == 1
    per_iteration = [batches[i][0].input_hw for i in range(0, len(batches), 4)]
    assert all(per_iteration[i] == per_iteration[i - i % 2] for i in range(30))


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_shares_partition_the_global_batch(world_size):
    common = {"multiscale": SMALL, "seed": 1, "max_iterations": 25, "start_iteration": 3}
    whole = keys(TrainBatchSampler(23, 8, **common))
    shares = [keys(TrainBatchSampler(23, 8, rank=r, world_size=world_size, **common))
              for r in range(world_size)]
    for step, batch in enumerate(whole):
        joined = [k for share in shares for k in share[step]]
        assert joined == batch  # same images, positions (hence augmentation) and size
    with pytest.raises(ConfigError, match="multiple of"):
        minibatch_per_process(6, 1, 4)


def batches(loader) -> list:
    return [(x, t, info) for x, t, info in loader]


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ta, ia), (xb, tb, ib) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and ia == ib
        assert all(torch.equal(u, v) for u, v in zip(ta, tb, strict=True))


def test_loader_is_bit_identical_whatever_the_workers_and_resumes_exactly():
    data = SyntheticShapes("train", num_images=24, image_size=96)
    common = {"multiscale": SMALL, "seed": 2, "max_iterations": 6}
    alone = batches(make_train_loader(data, 4, workers=0, **common))
    assert_same(alone, batches(make_train_loader(data, 4, workers=2, **common)))
    assert_same(alone[4:], batches(make_train_loader(data, 4, start_iteration=4, **common)))
    images, targets, info = alone[0]
    assert images.shape == (4, 3, *info.input_hw) and images.dtype == torch.float32
    assert images.is_contiguous()
    assert len(targets) == 4 and all(t.shape[1] == 5 for t in targets)
    assert info.iteration == 0 and info.positions == [0, 1, 2, 3] and info.skipped == []
    # A different seed is different data.
    other = batches(make_train_loader(data, 4, workers=0, multiscale=SMALL, seed=3,
                                      max_iterations=1))
    assert not torch.equal(other[0][0], alone[0][0])


def write_voc(root: Path, n: int, corrupt: set[int]) -> None:
    """A real Pascal VOC folder of ``n`` images with one box each; ``corrupt`` images are
    written as garbage bytes."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / "JPEGImages" / f"{i:03d}.jpg"
        if i in corrupt:
            path.write_bytes(b"not a jpeg at all" * 10)
        else:
            Image.fromarray(rng.integers(0, 255, (60, 80, 3), np.uint8)).save(path)
        (root / "Annotations" / f"{i:03d}.xml").write_text(
            f"<annotation><filename>{i:03d}.jpg</filename><size><width>80</width>"
            "<height>60</height><depth>3</depth></size><object><name>thing</name>"
            "<difficult>0</difficult><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax>"
            "<ymax>40</ymax></bndbox></object></annotation>"
        )


def test_a_corrupt_image_is_replaced_and_counted(tmp_path):
    write_voc(tmp_path, 6, corrupt={2})
    data = open_dataset(tmp_path, "all")
    assert len(data) == 6
    loader = make_train_loader(data, 6, multiscale=MultiScale(64, 64), seed=0, max_iterations=2)
    seen = batches(loader)
    for _, targets, info in seen:
        assert 2 not in info.indices and len(targets) == 6
        assert len(info.skipped) == 1 and "002.jpg" in info.skipped[0]
    assert len(loader.skipped) == 2  # once per epoch here: batch = dataset
    # The stand-in is the next image in dataset order, at the corrupt one's place.
    place = epoch_order(0, 0, 6).tolist().index(2)
    assert seen[0][2].indices[place] == 3 and seen[0][2].indices.count(3) == 2


def test_only_unreadable_images_is_a_data_error(tmp_path):
    write_voc(tmp_path, 3, corrupt={0, 1, 2})
    loader = make_train_loader(open_dataset(tmp_path, "all"), 2, multiscale=MultiScale(64, 64),
                               max_iterations=1)
    with pytest.raises(DataError, match="could not be read"):
        batches(loader)
