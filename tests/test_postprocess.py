"""postprocess() on hand-built network outputs: every expected row is written out by hand.

The rules checked (darknet's, as ``postprocess`` documents them): a detection's score is
objectness x class probability and must be strictly above ``conf_thresh`` (darknet:
``if (prob > thresh)``); with ``multi_label`` each (box, class) pair above it is a detection,
without it each box keeps its best class only; NMS runs per image and per class and removes a
box whose IoU with a better one of its class is strictly above ``iou_thresh`` (darknet's
``do_nms_sort``: ``if (box_iou(a, b) > thresh)``); rows come best first, at most ``max_det``
per image, as x1, y1, x2, y2, score, class.
"""

from __future__ import annotations

import pytest
import torch

from yolov3.inference.postprocess import postprocess


def row(cx: float, cy: float, w: float, h: float, obj: float, *probs: float) -> list[float]:
    return [cx, cy, w, h, obj, *probs]


def output(*images: list[list[float]]) -> torch.Tensor:
    """(B, N, 5 + C) from per-image lists of rows (padded with zero-objectness rows)."""
    n = max(len(rows) for rows in images)
    width = len(images[0][0])
    padded = [rows + [[10.0, 10.0, 4.0, 4.0] + [0.0] * (width - 4)] * (n - len(rows))
              for rows in images]
    return torch.tensor(padded, dtype=torch.float32)


def assert_rows(found: torch.Tensor, expected: list[list[float]]) -> None:
    expected_t = torch.tensor(expected, dtype=torch.float32).reshape(-1, 6)
    assert found.shape == expected_t.shape, (found, expected_t)
    torch.testing.assert_close(found, expected_t, rtol=0, atol=1e-6)


def test_score_is_objectness_times_class_probability_strictly_above_the_threshold() -> None:
    # obj 0.5: class scores 0.3, 0.25 (exactly the threshold: not above it), 0.05
    out = output([row(50, 40, 20, 10, 0.5, 0.6, 0.5, 0.1)])
    (dets,) = postprocess(out, conf_thresh=0.25)
    assert_rows(dets, [[40, 35, 60, 45, 0.3, 0]])  # cx, cy, w, h -> corners
    (dets,) = postprocess(out, conf_thresh=0.04)
    # one box, three classes: three detections, best first, NMS never across classes
    assert_rows(dets, [[40, 35, 60, 45, 0.3, 0], [40, 35, 60, 45, 0.25, 1],
                       [40, 35, 60, 45, 0.05, 2]])
    # a confident class under a low objectness is no detection: 0.2 x 0.99 = 0.198
    (dets,) = postprocess(output([row(50, 40, 20, 10, 0.2, 0.99, 0.0, 0.0)]), conf_thresh=0.25)
    assert_rows(dets, [])


def test_multi_label_keeps_every_class_above_the_threshold_single_label_the_best() -> None:
    out = output([row(50, 50, 40, 40, 0.5, 0.9, 0.8, 0.2)])  # scores 0.45, 0.40, 0.10
    (multi,) = postprocess(out, conf_thresh=0.25, multi_label=True)
    assert_rows(multi, [[30, 30, 70, 70, 0.45, 0], [30, 30, 70, 70, 0.40, 1]])
    (single,) = postprocess(out, conf_thresh=0.25, multi_label=False)
    assert_rows(single, [[30, 30, 70, 70, 0.45, 0]])
    # single label: a box whose best score is under the threshold gives nothing
    (single,) = postprocess(out, conf_thresh=0.46, multi_label=False)
    assert_rows(single, [])


def test_nms_is_per_class_at_the_iou_threshold() -> None:
    # All 40 x 40. A = [30, 30, 70, 70]; B = A shifted 10 right: IoU 1200 / 2000 = 0.6;
    # D = A shifted 20 right: IoU 800 / 2400 = 1/3; C = B's box in class 1.
    a = row(50, 50, 40, 40, 1.0, 0.9, 0.0)
    b = row(60, 50, 40, 40, 1.0, 0.8, 0.0)
    c = row(60, 50, 40, 40, 1.0, 0.0, 0.7)
    d = row(70, 50, 40, 40, 1.0, 0.6, 0.0)
    (dets,) = postprocess(output([d, c, b, a]), conf_thresh=0.25, iou_thresh=0.45)
    # B goes (0.6 > 0.45 with A, class 0); C stays (class 1); D stays (1/3 with A)
    assert_rows(dets, [[30, 30, 70, 70, 0.9, 0], [40, 30, 80, 70, 0.7, 1],
                       [50, 30, 90, 70, 0.6, 0]])
    # At iou_thresh 0.65, B stays as well; at 0.3, D goes too.
    (dets,) = postprocess(output([d, c, b, a]), conf_thresh=0.25, iou_thresh=0.65)
    assert dets[:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    (dets,) = postprocess(output([d, c, b, a]), conf_thresh=0.25, iou_thresh=0.3)
    assert_rows(dets, [[30, 30, 70, 70, 0.9, 0], [40, 30, 80, 70, 0.7, 1]])


def test_nms_suppresses_only_above_the_threshold_not_at_it() -> None:
    # [0, 0, 4, 4] and [0, 0, 4, 2]: intersection 8, union 16, IoU exactly 0.5
    out = output([row(2, 2, 4, 4, 1.0, 0.9), row(2, 1, 4, 2, 1.0, 0.8)])
    (dets,) = postprocess(out, conf_thresh=0.25, iou_thresh=0.5)
    assert_rows(dets, [[0, 0, 4, 4, 0.9, 0], [0, 0, 4, 2, 0.8, 0]])
    (dets,) = postprocess(out, conf_thresh=0.25, iou_thresh=0.49)
    assert_rows(dets, [[0, 0, 4, 4, 0.9, 0]])


def test_suppressed_box_does_not_suppress_others() -> None:
    # Greedy NMS: A (best) removes B (IoU 0.6); B would have removed E (IoU 0.6 with B) but
    # is gone, and E overlaps A by 1/3 only, so E stays.
    a = row(50, 50, 40, 40, 1.0, 0.9)
    b = row(60, 50, 40, 40, 1.0, 0.8)
    e = row(70, 50, 40, 40, 1.0, 0.7)
    (dets,) = postprocess(output([e, b, a]), conf_thresh=0.25, iou_thresh=0.45)
    assert_rows(dets, [[30, 30, 70, 70, 0.9, 0], [50, 30, 90, 70, 0.7, 0]])


def test_max_det_keeps_the_best_rows_of_each_image() -> None:
    # five disjoint boxes in a row with scores 0.3, 0.9, 0.5, 0.7, 0.4 (input order)
    scores = [0.3, 0.9, 0.5, 0.7, 0.4]
    rows = [row(10 + 20 * k, 10, 10, 10, 1.0, s) for k, s in enumerate(scores)]
    (dets,) = postprocess(output(rows), conf_thresh=0.25, max_det=3)
    assert_rows(dets, [[25, 5, 35, 15, 0.9, 0], [65, 5, 75, 15, 0.7, 0],
                       [45, 5, 55, 15, 0.5, 0]])
    (dets,) = postprocess(output(rows), conf_thresh=0.25, max_det=300)
    assert dets[:, 4].tolist() == pytest.approx(sorted(scores, reverse=True))
    # the cap counts detections, not boxes: one box with two classes fills a cap of 2
    (dets,) = postprocess(output([row(50, 50, 10, 10, 1.0, 0.8, 0.6), *[
        row(10 + 20 * k, 90, 10, 10, 1.0, 0.3, 0.0) for k in range(3)]]), max_det=2)
    assert_rows(dets, [[45, 45, 55, 55, 0.8, 0], [45, 45, 55, 55, 0.6, 1]])


def test_images_of_a_batch_are_separate() -> None:
    # The same box in two images is no overlap; the cap applies per image; an image with
    # nothing above the threshold gives an empty (0, 6).
    box = row(50, 50, 40, 40, 1.0, 0.9, 0.0)
    weaker = row(52, 50, 40, 40, 1.0, 0.8, 0.0)  # IoU 38 * 40 / (2 * 1600 - 1520) > 0.9
    faint = row(50, 50, 40, 40, 0.1, 0.9, 0.0)
    first, second, third = postprocess(output([box], [weaker, box], [faint]), max_det=1)
    assert_rows(first, [[30, 30, 70, 70, 0.9, 0]])
    assert_rows(second, [[30, 30, 70, 70, 0.9, 0]])
    assert_rows(third, [])
    assert third.shape == (0, 6)
    # without the cap the second image still has one row: the weaker box is suppressed
    _, second, _ = postprocess(output([box], [weaker, box], [faint]))
    assert_rows(second, [[30, 30, 70, 70, 0.9, 0]])
