"""Evaluation speed: ``yolov3.evaluation.evaluate`` on a dataset, and where its time goes.

Runs the whole evaluation (data-loader workers decoding and letterboxing, batched network,
darknet's postprocess with per-class NMS at conf 0.005, COCOeval) and reports images per second.
Then, in one process, times the inference stages on the same images: decode + letterbox,
network, NMS (``postprocess``), and prints each stage's share with evaluate's COCOeval time.
``nms_share`` and ``cocoeval_share`` are shares of the whole evaluation's wall time.

The default is the kangaroo photos (Pascal VOC, ``../shared/datasets/kangaroo``) with the
official yolov3-tiny at 416. The COCO model has no kangaroo class: every one of its 80 classes
is scored as ``kangaroo`` (class-agnostic AP), which keeps the detection count, and so the NMS
and COCOeval work, that of the real protocol.

``python benchmarks/eval_speed.py [--data DIR] [--model yolov3-tiny] [--device cuda]``; the
last line is ``nms_share=X cocoeval_share=Y images_per_second=Z``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

from yolov3 import from_darknet
from yolov3.datasets import open_dataset
from yolov3.errors import DataError
from yolov3.evaluation import evaluate
from yolov3.images import letterbox
from yolov3.inference import DetectOptions, postprocess

KANGAROO = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "kangaroo"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(KANGAROO))
    parser.add_argument("--split", default="all")
    parser.add_argument("--model", default="yolov3-tiny")
    parser.add_argument("--img-size", type=int, default=416)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = from_darknet(args.model, args.model)
    dataset = open_dataset(args.data, args.split)
    names = None if model.num_classes == len(dataset.names) else dataset.names[:1] * 80
    print(f"{dataset}; {args.model} at {args.img_size}, batch {args.batch_size}, "
          f"{args.workers} workers, {device}, {torch.get_num_threads()} threads")

    options = DetectOptions.for_evaluation(img_size=args.img_size)
    evaluate(model, dataset, options, device, batch_size=args.batch_size,
             workers=args.workers, model_names=names, progress=False)  # warm-up
    result = evaluate(model, dataset, options, device, batch_size=args.batch_size,
                      workers=args.workers, model_names=names, progress=False)
    t = result["timing"]
    total = t["inference_s"] + t["cocoeval_s"]
    print(f"evaluate: {result['images']} images, AP50 {result['AP50']:.3f}, "
          f"{t['images_per_second']:.1f} images/s, inference {t['inference_s']:.2f} s, "
          f"COCOeval {t['cocoeval_s']:.2f} s")

    # The inference stages one by one, in this process, on the same images.
    stages = dict.fromkeys(("decode+letterbox", "network", "nms"), 0.0)
    kept = 0
    with torch.inference_mode():
        for start in range(0, len(dataset), args.batch_size):
            t0 = time.perf_counter()
            batch = []
            for i in range(start, min(start + args.batch_size, len(dataset))):
                with contextlib.suppress(DataError):  # unreadable: evaluate skips it too
                    batch.append(letterbox(dataset[i].image, (args.img_size,) * 2)[0])
            x = torch.stack(batch).to(device)
            t1 = time.perf_counter()
            out = model(x)
            _sync(device)
            t2 = time.perf_counter()
            kept += sum(len(d) for d in postprocess(out, 0.005, 0.45, multi_label=True))
            _sync(device)
            stages["decode+letterbox"] += t1 - t0
            stages["network"] += t2 - t1
            stages["nms"] += time.perf_counter() - t2
    stages["cocoeval"] = t["cocoeval_s"]
    whole = sum(stages.values())
    print(f"stages in one process ({kept / len(dataset):.0f} detections per image after NMS):")
    for name, seconds in stages.items():
        print(f"  {name:<17} {seconds:7.2f} s  {seconds / whole:6.1%}")
    print(f"nms_share={stages['nms'] / total:.3f} cocoeval_share={t['cocoeval_s'] / total:.3f} "
          f"images_per_second={t['images_per_second']:.1f}")


if __name__ == "__main__":
    main()
