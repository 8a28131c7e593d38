"""``yolov3 explain``: pictures of how YOLOv3 sees an image (target assignment, channel roles)
and darknet's layer table of a network, grouped by its parts (backbone, upsampling network,
YOLO layers)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from yolov3.checks import check_img_size
from yolov3.choices import DATASET_FORMS
from yolov3.classes import default_names
from yolov3.cli.common import DEFAULT_IMG_SIZE, add_img_size_arg, add_model_args
from yolov3.cli.data import add_dataset_options
from yolov3.errors import DataError
from yolov3.model.cfg import BUILTIN_CFGS, DEFAULT_MODEL, as_hw

if TYPE_CHECKING:
    from yolov3.datasets.base import DetectionDataset
    from yolov3.datasets.sample import Sample
    from yolov3.model.network import YOLOv3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="pictures of target assignment and of a YOLO layer's channels; the layer table",
        description="Pictures that show how YOLOv3 sees an image, and the layers of a network.",
    )
    what = p.add_subparsers(dest="what", required=True, metavar="assign|channels|layers")
    _add_assign(what)
    _add_channels(what)
    _add_layers(what)


def _add_common(p: argparse.ArgumentParser, default_size: int) -> None:
    p.add_argument("image", metavar="IMAGE", help="the image (with --data: its path or file "
                   "name in the dataset)")
    add_model_args(p)
    add_img_size_arg(p, "network input size, a multiple of 32")
    p.add_argument("--names", default=None, metavar="FILE",
                   help="class names, one per line (default: the dataset's, else COCO's for 80 "
                   "classes)")
    p.add_argument("--size", type=int, default=default_size,
                   help="side of each panel in pixels (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="FILE.png",
                   help="picture to write (default: runs/explain/<image>-<command>.png)")


def _add_assign(what: argparse._SubParsersAction) -> None:
    p = what.add_parser(
        "assign",
        help="which anchor of which layer learns each ground truth",
        description="Draw the training targets of an image exactly as the training code makes "
        "them (the same assign_targets and ignore_mask the loss calls): one panel per YOLO "
        "layer with its grid, each ground truth it learns with the responsible cell, the "
        "chosen anchor's shape and the label L<layer> a<anchor> IoU <shape IoU>, and the cells "
        "whose objectness loss the ignore threshold skips for the given model. The picture is "
        "(YOLO layers x SIZE) x SIZE pixels. Weights 'none' keeps a random initialisation.",
    )
    _add_common(p, 600)
    boxes = p.add_mutually_exclusive_group(required=True)
    boxes.add_argument("--data", metavar="DATASET",
                       help="dataset holding IMAGE and its boxes. "
                       + DATASET_FORMS.replace("%", "%%"))
    boxes.add_argument("--boxes", metavar="FILE",
                       help="IMAGE's boxes as a YOLO label file: 'class xc yc w h' per line, "
                       "fractions of the image")
    p.add_argument("--split", default="train",
                   help="split of --data that holds IMAGE ('all' for a VOC folder) "
                   "(default: %(default)s)")
    add_dataset_options(p)
    p.set_defaults(run=run_assign)


def _add_channels(what: argparse._SubParsersAction) -> None:
    p = what.add_parser(
        "channels",
        help="one YOLO layer's objectness per anchor and its channel layout",
        description="For one YOLO layer: the objectness of each anchor as a heat map over the "
        "image, and the layout of the head's channels (x, y, w, h, objectness, classes per "
        "anchor) with their values at the most confident cell. The picture is "
        "(anchors x SIZE) x (SIZE + SIZE/2) pixels.",
    )
    _add_common(p, 500)
    p.add_argument("--layer", type=int, default=0,
                   help="YOLO layer, in cfg order: 0 has the coarsest grid (default: "
                   "%(default)s)")
    p.set_defaults(run=run_channels)


def _add_layers(what: argparse._SubParsersAction) -> None:
    p = what.add_parser(
        "layers",
        help="darknet's layer table, grouped by backbone, upsampling network and YOLO layers",
        description="Print darknet's layer table of a network (no weights needed): for each "
        "layer its index, type, filters, size/stride, output map C x H x W at --img-size and "
        "trainable parameters, grouped by the blog's parts: the backbone (Darknet-53 in "
        "yolov3), the upsampling network, and one head per YOLO layer (its 1x1 convolution "
        "and the [yolo] layer). Ends with the convolutional layers and parameters of each "
        "part and of the whole network.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|CFG",
                   help=f"a built-in architecture ({', '.join(BUILTIN_CFGS)}) or a darknet "
                   ".cfg file (default: %(default)s)")
    add_img_size_arg(p, "network input size, a multiple of 32", default=DEFAULT_IMG_SIZE)
    p.set_defaults(run=run_layers)


def _model(args: argparse.Namespace) -> tuple[YOLOv3, list[str], int | tuple[int, int]]:
    """The model of --model / --weights ('none': random initialisation) on --device, its
    class names and its input (--img-size, else a checkpoint's own:
    :func:`~yolov3.cli.runtime.input_size`)."""
    from yolov3.cli.runtime import device_from_args, input_size, model_from_args

    check_img_size(args.img_size)
    model, names = model_from_args(args)
    return model.to(device_from_args(args)), names, input_size(args, model)


def _output(args: argparse.Namespace, command: str) -> Path:
    return Path(args.out or f"runs/explain/{Path(args.image).stem}-{command}.png")


def _find_sample(dataset: DetectionDataset, image: str) -> Sample:
    """The sample of ``dataset`` whose file is ``image`` (a path, else a file name)."""
    wanted = Path(image)
    files = [Path(f) for f in dataset.files]
    hits = [i for i, f in enumerate(files) if wanted.is_file() and f.resolve() == wanted.resolve()]
    hits = hits or [i for i, f in enumerate(files) if f.name == wanted.name]
    if len(hits) != 1:
        what = "matches several images" if hits else "is not one of the images"
        raise DataError(f"{image}: {what} of the {dataset.split} split of {dataset.source} "
                        f"({len(dataset)} images); give its path, or another --split")
    return dataset[hits[0]]


def _sample_from_label_file(image: str, boxes: str, num_classes: int) -> Sample:
    """IMAGE with the boxes of a YOLO label file."""
    import numpy as np
    import torch
    from torchvision.ops import box_convert

    from yolov3.datasets.problems import Problems
    from yolov3.datasets.sample import Sample
    from yolov3.datasets.yolo_txt import parse_label_file
    from yolov3.images import load_image

    if not Path(boxes).is_file():
        raise DataError(f"{boxes}: no such label file")
    pixels = load_image(image)
    # A strict record makes the file's first bad line a DataError naming it.
    classes, cxcywh = parse_label_file(Path(boxes), num_classes, Problems(strict=True))
    h, w = pixels.shape[:2]
    xyxy = box_convert(torch.from_numpy(cxcywh), "cxcywh", "xyxy") * torch.tensor([w, h, w, h])
    return Sample(pixels, xyxy.numpy().astype(np.float32), classes, 0, image)


def run_assign(args: argparse.Namespace) -> int:
    from yolov3.cli.runtime import model_label
    from yolov3.datasets.open import open_dataset
    from yolov3.explain.assign import draw_assignment, explain_assignment
    from yolov3.explain.figure import save_png
    from yolov3.weights.load import is_untrained

    model, names, size = _model(args)
    if args.data:
        dataset = open_dataset(args.data, args.split, args.images, args.strict)
        sample = _find_sample(dataset, args.image)
        names = default_names(len(dataset.names), args.names) if args.names else dataset.names
    else:
        sample = _sample_from_label_file(args.image, args.boxes, model.num_classes)
    view = explain_assignment(model, sample, size)
    title = (f"{Path(sample.file_name).name}: target assignment, {model_label(args)}"
             + (" (random weights)" if is_untrained(args.weights) else ""))
    path = save_png(draw_assignment(view, names, args.size, title), _output(args, "assign"))
    boxes = view.boxes_xyxy().round().int().tolist()
    classes = view.targets[:, 0].long().tolist()
    for lab in view.labels:
        aw, ah = view.anchors[lab.anchor].tolist()
        print(f"{names[classes[lab.gt]]} {boxes[lab.gt]}: layer {lab.layer} (stride "
              f"{view.strides[lab.layer]}), anchor {lab.anchor} ({aw:g}x{ah:g}), cell "
              f"({lab.cell_i}, {lab.cell_j}), shape IoU {lab.iou:.3f}"
              + ("" if lab.kept else ", box targets replaced by a later box on that cell"))
    for g in view.unlearned:
        print(f"{names[classes[g]]} {boxes[g]}: learned by no layer (its best anchor is in no "
              "mask)")
    ignored = ", ".join(f"layer {k}: {int(m.sum())}" for k, m in enumerate(view.ignored))
    print(f"{len(view.targets)} ground truths; ignored (anchor, cell) predictions: {ignored}")
    print(f"wrote {path} ({len(view.strides) * args.size}x{args.size})")
    return 0


def run_channels(args: argparse.Namespace) -> int:
    from yolov3.explain.channels import draw_channels, explain_channels
    from yolov3.explain.figure import save_png
    from yolov3.images import load_image

    model, names, size = _model(args)
    view = explain_channels(model, load_image(args.image), size, args.layer)
    width, height = len(view.mask) * args.size, args.size + args.size // 2
    path = save_png(draw_channels(view, names, args.size), _output(args, "channels"))
    a, j, i = view.peak()
    best = view.decoded[a, j, i]
    k = int(best[5:].argmax())
    h, w = view.objectness.shape[1:]
    print(f"YOLO layer {args.layer}: stride {view.stride}, {w}x{h} cells, anchors "
          f"{','.join(map(str, view.mask))}; most confident: anchor {view.mask[a]} at cell "
          f"({i}, {j}), objectness {best[4]:.2f}, {names[k]} {best[5 + k]:.2f}")
    print(f"wrote {path} ({width}x{height})")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    import torch

    from yolov3.model.network import build_model
    from yolov3.model.summary import format_layer_table, layer_table

    height, width = as_hw(check_img_size(args.img_size))
    with torch.device("meta"):  # shapes and parameter counts only: no memory, no weights
        model = build_model(args.model)
    print(f"{Path(args.model).stem}: {len(model.layers)} layers, input {width} x {height}")
    print(format_layer_table(layer_table(model, (height, width))))
    return 0
