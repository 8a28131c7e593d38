"""``yolov3 val`` against a plain OpenCV DNN + numpy pipeline doing the same protocol, side by
side in one process.

Both score the official yolov3-tiny at 416 on the 128 COCO photos of
``../shared/datasets/coco128-train`` (its COCO JSON, one ground truth for both) with darknet's
COCO protocol: letterboxed input, every (box, class) whose objectness x class probability is
above 0.005, per-class NMS at IoU 0.45, at most 300 detections per image, COCO results JSON,
pycocotools' COCOeval.

- ``yolov3 val`` is the command itself, run in this process (``yolov3.cli.main.main``) with its
  defaults (batch 8; 2 loader workers, none on a CPU of at most 2 cores) and each
  ``--precision`` asked; its time runs from the call to its return: the model, the loop,
  COCOeval and the report files it writes.
- ``opencv`` is what a user would write without this project: ``cv2.dnn.readNetFromDarknet``
  on the same cfg and weights (the cfg's [yolo] layers given ``thresh=0.001``, else OpenCV
  zeroes every class score below 0.2), ``cv2.imread``, a ``cv2.resize`` letterbox, the
  forward in batches of 8, decoding in numpy, ``cv2.dnn.NMSBoxesBatched``, COCOeval; its time
  runs from reading the network to the AP.

The runs alternate round by round, so that other load on the machine slows both alike; the
fastest round of each is kept. Each line gives the images per second of the whole protocol
(128 / wall time) and of the loop alone (reading to detections), with AP50 and AP. The last
lines are ``ratio_val_vs_opencv=X`` (``yolov3 val``'s images per second over OpenCV's, in fp32,
val's default) and one ``ratio_val_<precision>_vs_opencv=X`` per other precision.

``python benchmarks/val_speed.py [--precision fp32 auto int8] [--rounds 2]``; int8 is calibrated
on 32 photos of the kangaroo set (``../shared/datasets/kangaroo``), disjoint from the evaluated
ones.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolov3.cli.main import main as yolov3_main
from yolov3.model.cfg import builtin_cfg_path
from yolov3.weights.official import fetch_weights

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
COCO128 = SHARED / "coco128-train"
KANGAROO = SHARED / "kangaroo"
MODEL, SIZE, BATCH, CONF, IOU, MAX_DET = "yolov3-tiny", 416, 8, 0.005, 0.45, 300


def ours(precision: str, out: Path) -> dict[str, float]:
    """``yolov3 val`` in ``precision``: wall seconds, the loop's images/s, AP50, AP."""
    args = ["val", "--data", str(COCO128 / "instances_train.json"), "--model", MODEL,
            "--img-size", str(SIZE), "--precision", precision, "--out", str(out)]
    if precision == "int8":
        args += ["--calib", str(KANGAROO), "--calib-images", "32"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = yolov3_main(args)
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(f"yolov3 val --precision {precision} failed (exit {code})")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"s": seconds, "loop_ips": metrics["timing"]["images_per_second"],
            "AP50": metrics["AP50"], "AP": metrics["AP"]}


def letterboxed(image_bgr: np.ndarray) -> tuple[np.ndarray, tuple[float, float, int, int]]:
    """Darknet's letterbox with OpenCV: RGB in [0, 1] resized (bilinear) to fit SIZE x SIZE,
    centred on grey; and (scale x, scale y, left, top) to map boxes back."""
    h, w = image_bgr.shape[:2]
    if SIZE / w < SIZE / h:
        new_w, new_h = SIZE, int(h * SIZE / w)
    else:
        new_w, new_h = int(w * SIZE / h), SIZE
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    canvas = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    left, top = (SIZE - new_w) // 2, (SIZE - new_h) // 2
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(
        rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1), (new_w / w, new_h / h, left, top)


def detections(rows: np.ndarray, geometry: tuple[float, float, int, int],
               image_hw: tuple[int, int], categories: list[int],
               image_id: int) -> list[dict[str, Any]]:
    """COCO results of one image from OpenCV's (N, 85) rows: cx, cy, w, h (fractions of the
    input), objectness, objectness x class probability."""
    box, cls = np.nonzero(rows[:, 5:] > CONF)
    scores = rows[box, 5 + cls]
    cx, cy, bw, bh = (rows[box, :4] * SIZE).T
    xywh = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1)  # input pixels, for the NMS
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), cls.tolist(),
                                              CONF, IOU), np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:MAX_DET]
    sx, sy, left, top = geometry
    h, w = image_hw
    x1 = np.clip((xywh[keep, 0] - left) / sx, 0, w)
    y1 = np.clip((xywh[keep, 1] - top) / sy, 0, h)
    x2 = np.clip((xywh[keep, 0] + xywh[keep, 2] - left) / sx, 0, w)
    y2 = np.clip((xywh[keep, 1] + xywh[keep, 3] - top) / sy, 0, h)
    return [{"image_id": image_id, "category_id": categories[c], "score": float(s),
             "bbox": [float(a), float(b), float(c2 - a), float(d - b)]}
            for c, s, a, b, c2, d in zip(cls[keep], scores[keep], x1, y1, x2, y2, strict=True)]


def opencv(cfg: Path, weights: Path) -> dict[str, float]:
    """The OpenCV DNN pipeline: wall seconds, the loop's images/s, AP50, AP."""
    start = time.perf_counter()
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    outputs = net.getUnconnectedOutLayersNames()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(COCO128 / "instances_train.json"))
    categories = sorted(gt.getCatIds())  # darknet's 80 classes are COCO's, in id order
    infos = gt.loadImgs(sorted(gt.getImgIds()))
    results: list[dict[str, Any]] = []
    loop = time.perf_counter()
    for k in range(0, len(infos), BATCH):
        chunk = infos[k : k + BATCH]
        images = [cv2.imread(str(COCO128 / "images" / info["file_name"])) for info in chunk]
        prepared = [letterboxed(image) for image in images]
        net.setInput(np.stack([p[0] for p in prepared]))
        found = net.forward(outputs)
        rows = np.concatenate([o.reshape(len(chunk), -1, o.shape[-1]) for o in found], axis=1)
        for info, image, (_, geometry), r in zip(chunk, images, prepared, rows, strict=True):
            results += detections(r, geometry, image.shape[:2], categories, info["id"])
    loop = time.perf_counter() - loop
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"s": time.perf_counter() - start, "loop_ips": len(infos) / loop,
            "AP50": float(ev.stats[1]), "AP": float(ev.stats[0])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--precision", nargs="+", default=["fp32", "auto", "int8"],
                   choices=["fp32", "bf16", "auto", "int8"],
                   help="yolov3 val's precisions (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    args = p.parse_args()
    if not COCO128.is_dir():
        raise SystemExit(f"the coco128 set is not at {COCO128}")
    if "int8" in args.precision and not KANGAROO.is_dir():
        raise SystemExit(f"int8 is calibrated on the kangaroo photos, not at {KANGAROO}")
    threads = torch.get_num_threads()
    cv2.setNumThreads(threads)
    weights = fetch_weights(MODEL)
    runs: dict[str, list[dict[str, float]]] = {"opencv": []} | {k: [] for k in args.precision}
    print(f"{MODEL} at {SIZE} on {COCO128.name} (128 images), {threads} threads; "
          f"{args.rounds} alternating rounds, the fastest kept", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / f"{MODEL}.cfg"
        cfg.write_text(builtin_cfg_path(MODEL).read_text().replace("[yolo]",
                                                                  "[yolo]\nthresh=0.001"))
        for _ in range(args.rounds):
            runs["opencv"].append(opencv(cfg, weights))
            for precision in args.precision:
                runs[precision].append(ours(precision, Path(tmp) / precision))
    best = {k: min(v, key=lambda r: r["s"]) for k, v in runs.items()}
    for key, r in best.items():
        name = "opencv dnn + numpy" if key == "opencv" else f"yolov3 val --precision {key}"
        print(f"{name}: {128 / r['s']:.1f} images/s ({r['s']:.1f} s; loop {r['loop_ips']:.1f} "
              f"images/s), AP50 {r['AP50']:.4f}, AP {r['AP']:.4f}")
    for key in args.precision:
        label = "" if key == "fp32" else f"_{key}"
        print(f"ratio_val{label}_vs_opencv={best['opencv']['s'] / best[key]['s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
