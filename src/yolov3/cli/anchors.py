"""``yolov3 anchors``: anchors fitted to a dataset's boxes, their quality, a picture and a cfg."""

from __future__ import annotations

import argparse
from pathlib import Path

from yolov3.checks import check_img_size
from yolov3.choices import DATASET_FORMS
from yolov3.cli.common import img_size
from yolov3.cli.data import add_dataset_options
from yolov3.cli.parser import add_old_spelling


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "anchors",
        help="fit anchors to a dataset's boxes (k-means, 1 - IoU)",
        description="Anchors for a dataset: k-means on the box shapes in the letterboxed "
        "input with 1 - IoU as the distance (YOLOv2's dimension clusters), seeded, best of "
        "several restarts. Prints the anchors sorted by area in cfg syntax with their mean "
        "best IoU and best possible recall at IoU 0.5, and the same for the cfg's own (COCO) "
        "anchors; writes DIR/anchors.png (2*SIZE x SIZE pixels) and DIR/<cfg>-anchors.cfg, "
        "the cfg with the fitted anchors and the dataset's classes.",
    )
    p.add_argument("--data", required=True, metavar="DATASET",
                   help=DATASET_FORMS.replace("%", "%%"))
    add_dataset_options(p)
    p.add_argument("--split", default="train",
                   help="split whose boxes are clustered ('all' for a VOC folder) "
                   "(default: %(default)s)")
    p.add_argument("--n", type=int, default=9, help="number of anchors (default: %(default)s)")
    p.add_argument("--img-size", type=img_size, default=416, metavar="SIZE",
                   help="network input size the shapes are measured in, one side (a square "
                   "input) (default: %(default)s)")
    p.add_argument("--model", dest="cfg", default=None, metavar="NAME|CFG",
                   help="architecture (a built-in name or a darknet .cfg file) to compare with "
                   "and to write with the new anchors (default: yolov3-tiny for --n 6, else "
                   "yolov3)")
    add_old_spelling(p, "--cfg", "--model", dest="cfg")
    p.add_argument("--seed", type=int, default=0, help="k-means seed (default: %(default)s)")
    p.add_argument("--restarts", type=int, default=10,
                   help="k-means runs, the best kept (default: %(default)s)")
    p.add_argument("--size", type=int, default=600,
                   help="picture height in pixels, 200 to 4096; its width is twice that "
                   "(default: %(default)s)")
    p.add_argument("--out", default="runs/anchors", metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from yolov3.anchors import (
        RECALL_IOU,
        anchor_quality,
        anchors_cfg_line,
        fit_anchors,
        write_anchor_cfg,
    )
    from yolov3.datasets.open import open_dataset
    from yolov3.explain.anchors import draw_anchors
    from yolov3.explain.figure import check_picture_size, save_png
    from yolov3.fileio import writable_dir
    from yolov3.model.cfg import cfg_anchors, load_cfg

    check_img_size(args.img_size, square="yolov3 anchors measures the box shapes in a square "
                   "input")
    check_picture_size(args.size)
    cfg = args.cfg or ("yolov3-tiny" if args.n == 6 else "yolov3")
    sections = load_cfg(cfg)
    reference = np.asarray(cfg_anchors(sections))
    dataset = open_dataset(args.data, args.split, args.images, args.strict)
    anchors, shapes = fit_anchors(dataset, args.n, args.img_size, args.seed, args.restarts)
    out = writable_dir(args.out)
    print(f"{dataset.format} dataset {dataset.source}, split {dataset.split}: {len(shapes)} "
          f"boxes in {len(dataset)} images, measured in the {args.img_size}x{args.img_size} "
          "letterboxed input")
    print(anchors_cfg_line(anchors))
    name = Path(str(cfg)).stem
    for what, anchor_set in (("fitted", anchors), (f"{name}'s", reference)):
        q = anchor_quality(shapes, anchor_set)
        print(f"{what + ' anchors:':<22} mean best IoU {q.mean_iou:.3f}, best possible recall "
              f"(IoU >= {RECALL_IOU:g}) {q.recall:.3f}")
    same_count = len(reference) == args.n
    picture = draw_anchors(anchors, shapes, args.img_size, args.size,
                           sections if same_count else None, reference, f"{name}'s anchors",
                           args.seed)
    written = [f"{save_png(picture, out / 'anchors.png')} ({2 * args.size}x{args.size})"]
    if same_count or args.cfg:
        path = write_anchor_cfg(cfg, anchors, out / f"{name}-anchors.cfg", len(dataset.names))
        written.append(f"{path} ({len(dataset.names)} classes)")
    else:
        print(f"no cfg written: {name} has {len(reference)} anchors, not {args.n} "
              "(name a cfg with --cfg)")
    print("wrote " + " and ".join(written))
    if dataset.problems:
        print(dataset.problems.summary())
    return 0
