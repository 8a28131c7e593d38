"""``yolov3 export``: a model as an ONNX graph or a TorchScript module."""

from __future__ import annotations

import argparse

from yolov3.checks import check_img_size
from yolov3.choices import EXPORT_FORMATS, EXPORT_PRECISIONS, EXPORT_SUFFIXES, PRECISIONS
from yolov3.cli.common import (
    add_calibration_args,
    add_img_size_arg,
    add_model_args,
    at_least,
)
from yolov3.cli.parser import add_old_spelling
from yolov3.errors import YoloError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX or TorchScript",
        description="Export a model, batch norm folded into the convolutions and darknet's "
        "decoding included: input 'images' (B, 3, H, W) in [0, 1], output 'output' (B, N, 5+C) "
        "of cx, cy, w, h (input pixels), objectness and class probabilities.",
    )
    add_model_args(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                   help="onnx (ONNX Runtime, TensorRT, OpenVINO...) or torchscript "
                   "(torch.jit.load) (default: %(default)s)")
    add_img_size_arg(p, "input size, a multiple of 32")
    p.add_argument("--batch-size", dest="batch", type=at_least(1), default=1,
                   help="images per forward pass, the input's batch dimension "
                   "(default: %(default)s)")
    add_old_spelling(p, "--batch", "--batch-size", dest="batch", type=at_least(1))
    p.add_argument("--dynamic", action="store_true",
                   help="ONNX: leave batch, height and width free")
    p.add_argument("--precision", default="fp32",
                   choices=sorted({name for names in EXPORT_PRECISIONS.values()
                                   for name in names}, key=PRECISIONS.index),
                   help="number format of the network: fp32; fp16 (weights and input in "
                   "float16, for GPU runtimes); int8 (ONNX: the graph quantised by ONNX "
                   "Runtime, QDQ, calibrated on --calib); bf16 (TorchScript: weights and input "
                   "images in bfloat16; ONNX Runtime has no bfloat16 convolution on the CPU). "
                   "Decoding and NMS stay float32 (default: %(default)s)")
    add_old_spelling(p, "--half", "--precision fp16", dest="half", nargs=0, const=True,
                     default=False)
    add_calibration_args(p)
    p.add_argument("--include-nms", action="store_true",
                   help="ONNX: add thresholds and per-class NMS to the graph; it outputs "
                   "'detections' (K, 7): image, x1, y1, x2, y2, score, class, and takes the "
                   "inputs 'score_threshold' and 'iou_threshold'")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default: runs/export/NAME.onnx or .torchscript, NAME the "
                   "model's, in the first of runs/export, runs/export2, ... without that file)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from yolov3.cli.runtime import (
        calibration_from_args,
        device_from_args,
        input_size,
        model_from_args,
        model_label,
    )
    from yolov3.export import write_model
    from yolov3.inference.options import DetectOptions
    from yolov3.run_folders import export_path

    check_img_size(args.img_size)
    if args.format == "torchscript" and (args.dynamic or args.include_nms):
        raise YoloError("--dynamic and --include-nms are ONNX options; drop them or use "
                        "--format onnx")
    if args.half and args.precision != "fp32":
        raise YoloError(f"--half is the fp16 precision; it cannot be combined with --precision "
                        f"{args.precision}")
    calib = calibration_from_args(args)
    out = export_path(args.out or None, model_label(args) + EXPORT_SUFFIXES[args.format],
                      {"--weights": args.weights, "--model": args.model})
    model, _ = model_from_args(args)
    model.to(device_from_args(args))
    options = DetectOptions(img_size=input_size(args, model),
                            precision="fp16" if args.half else args.precision, calib=calib)
    write_model(model, out, args.format, options, args.batch, args.dynamic, args.include_nms)
    print(f"{args.format} model written to {out} ({options.precision}, "
          f"{out.stat().st_size / 1e6:.1f} MB)")
    return 0
