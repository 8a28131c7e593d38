"""CPU inference latency: this project's paths against OpenCV DNN, side by side in one process.

For each (model, input size, batch) row, every engine runs the same letterboxed real photos with
the same thread count, interleaved round by round so that a busy machine slows all of them
alike; the table gives the median latency per batch and images per second:

- ``opencv``: OpenCV DNN's darknet importer on the same cfg and weights (network only);
- ``plain``: the eager ``YOLOv3`` model behind ``Detector``;
- ``fast-eager`` / ``fast-trace``: :class:`yolov3.inference.fast.FastModel` behind ``Detector``;
- ``torch-compile`` (with ``--compile``): the folded model through ``torch.compile`` (Inductor,
  frozen weights) behind ``Detector``; compiling yolov3 takes a minute or more;
- ``onnxruntime``: the ONNX export run by ONNX Runtime behind ``OnnxDetector``;
- ``bf16-trace`` (on a CPU with native bfloat16: AVX512_BF16 or AMX): ``fast-trace`` in bf16,
  what ``--precision bf16`` (and ``auto`` there) runs; its detections are close to, not equal
  to, fp32's, and ``ratio_bf16_vs_opencv=X`` follows ``ratio_vs_opencv``;
- ``int8-ort`` (on a CPU with int8 dot products: VNNI or AMX): what ``--precision int8`` runs,
  the ONNX graph quantised by ONNX Runtime and calibrated on 32 images of the shared coco128
  set (the four photos where it is not there); its detections are close to fp32's, and
  ``ratio_int8_vs_opencv=X`` is printed last.

The project's times include decoding, thresholding and NMS. ``same`` says whether an engine's
detections equal the plain model's. yolov3-tiny uses the official weights; yolov3 uses random
weights (written as a darknet file, so OpenCV reads the same network), with the objectness bias
of its heads set to -4 so that, as with trained weights, few boxes reach NMS.

``python benchmarks/infer.py --model yolov3 --img-size 416 --batch 1`` measures that row; the
``ratio_vs_opencv=X`` line is the best project median over OpenCV's, for the yolov3 / 416 /
batch 1 row when measured (else the last row); the bf16 and int8 ratios are of the same row.
"""

from __future__ import annotations

import argparse
import io
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cv2
import skimage
import torch
from PIL import Image

import yolov3
from yolov3.cli.main import main as yolov3_main
from yolov3.export import export_onnx
from yolov3.images import letterbox, load_image
from yolov3.inference import Detections, DetectOptions, Detector
from yolov3.inference.fast import FastModel, fold_batch_norm
from yolov3.inference.onnx_backend import OnnxDetector
from yolov3.inference.precision import native_bf16, native_int8
from yolov3.inference.quantize import calibration_images
from yolov3.model import Decoded
from yolov3.model.cfg import builtin_cfg_path
from yolov3.weights.official import fetch_weights

PHOTOS = Path(skimage.__file__).parent / "data"
PHOTO_NAMES = ("coffee", "motorcycle_left", "astronaut", "chelsea")
COCO128 = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "coco128-train"
PROJECT = ("fast-eager", "fast-trace", "torch-compile", "onnxruntime")
BF16 = native_bf16(torch.device("cpu"))
INT8 = native_int8()  # the int8 dot-product instructions, empty where there are none


def random_yolov3_weights(path: Path) -> None:
    """A yolov3 darknet weights file with random values and sane batch-norm statistics."""
    torch.manual_seed(0)
    model = yolov3.build_model("yolov3")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.uniform_(-0.1, 0.1)
        for head in model.yolo_layers:
            i = next(i for i, m in enumerate(model.layers) if m is head)
            bias = model.layers[i - 1].conv.bias.view(head.num_anchors, -1)
            bias[:, 4] = -4.0
    yolov3.save_darknet_weights(model, path)


def photo_batch(batch: int, size: int) -> tuple[torch.Tensor, list]:
    """``batch`` real photos letterboxed to ``size``, and their letterboxes."""
    prepared = [letterbox(load_image(PHOTOS / f"{PHOTO_NAMES[i % 4]}.png"), (size, size))
                for i in range(batch)]
    return torch.stack([p[0] for p in prepared]), [p[1] for p in prepared]


def same_detections(a: list[Detections], b: list[Detections]) -> bool:
    """Equal detections: same classes in the same order, boxes to 1e-3 px, scores to 1e-5."""
    return all(
        len(x) == len(y) and torch.equal(x.labels, y.labels)
        and torch.allclose(x.boxes, y.boxes, atol=1e-3) and torch.allclose(x.scores, y.scores,
                                                                            atol=1e-5)
        for x, y in zip(a, b, strict=True)
    )


def engines(
    name: str, weights: Path, size: int, batch: int, threads: int, compile_: bool, tmp: Path
) -> dict[str, Callable[[torch.Tensor, list], object]]:
    """The engines of one row, each a callable on (batch tensor, letterboxes)."""
    model = yolov3.from_darknet(name, weights)
    net = cv2.dnn.readNetFromDarknet(str(builtin_cfg_path(name)), str(weights))
    outputs = net.getUnconnectedOutLayersNames()

    def opencv(x: torch.Tensor, _boxes: list) -> object:
        net.setInput(x.numpy())
        return net.forward(outputs)

    options = DetectOptions(img_size=size)
    onnx_path = export_onnx(model, tmp / f"{name}-{size}-{batch}.onnx", options, batch)
    calib = calibration_images(COCO128 / "images" if COCO128.is_dir() else
                               [load_image(PHOTOS / f"{n}.png") for n in PHOTO_NAMES], 32)
    detectors = {
        "plain": Detector(model, options),
        "fast-eager": Detector(FastModel(model, "eager"), options),
        "fast-trace": Detector(FastModel(model, "trace"), options),
        "onnxruntime": OnnxDetector(onnx_path, options, num_threads=threads),
    }
    if BF16:
        detectors["bf16-trace"] = Detector(FastModel(model, "trace", precision="bf16"), options)
    if INT8:
        int8_path = export_onnx(model, tmp / f"{name}-{size}-{batch}-int8.onnx",
                                options.replace(precision="int8", calib=calib), batch)
        detectors["int8-ort"] = OnnxDetector(int8_path, options, num_threads=threads)
    if compile_:
        import torch._inductor.config

        torch._inductor.config.freezing = True
        detectors["torch-compile"] = Detector(torch.compile(Decoded(fold_batch_norm(model))),
                                              options)
    return {"opencv": opencv} | {k: d.detect_batch for k, d in detectors.items()}


def measure_row(
    name: str, weights: Path, size: int, batch: int, args: argparse.Namespace, tmp: Path
) -> dict[str, dict]:
    """Median latency (ms per batch), images per second, set-up time and sameness per engine."""
    x, boxes = photo_batch(batch, size)
    found = {}
    setup = {}
    with torch.inference_mode():
        runs = engines(name, weights, size, batch, args.threads, args.compile, tmp)
        for key, run in runs.items():
            start = time.perf_counter()
            found[key] = run(x, boxes)  # the first call traces / compiles
            setup[key] = time.perf_counter() - start
            for _ in range(args.warmup - 1):
                run(x, boxes)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.runs):
            for key, run in runs.items():
                start = time.perf_counter()
                run(x, boxes)
                times[key].append(time.perf_counter() - start)
    row = {}
    for key, t in times.items():
        median = statistics.median(t)
        same = "-" if key == "opencv" else same_detections(found["plain"], found[key])
        row[key] = {"ms": 1000 * median, "ips": batch / median, "first_s": setup[key],
                    "same": same, "min_ms": 1000 * min(t)}
    return row


def end_to_end(name: str, weights: Path, count: int, threads: int, tmp: Path) -> list[str]:
    """``yolov3 detect`` on a folder of ``count`` photos (jpg, various sizes), per backend."""
    folder = tmp / "photos"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        image = Image.open(PHOTOS / f"{PHOTO_NAMES[i % 4]}.png").convert("RGB")
        scale = 0.6 + 0.1 * (i % 7)
        image.resize((round(image.width * scale), round(image.height * scale))).save(
            folder / f"{i:03d}.jpg", quality=90)
    lines = []
    for backend in ("torch", "onnxruntime"):
        out = tmp / f"out-{backend}"
        start = time.perf_counter()
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            yolov3_main(["detect", str(folder), "--model", name, "--weights", str(weights),
                         "--backend", backend, "--batch-size", "8", "--workers", str(threads),
                         "--out", str(out)])
        seconds = time.perf_counter() - start
        lines.append(f"yolov3 detect --backend {backend} --model {name}: {count} images in "
                     f"{seconds:.1f} s = {count / seconds:.2f} img/s (start-up, decoding, "
                     f"drawing and writing included)")
        shutil.rmtree(out)
    return lines


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                   if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    import onnxruntime

    return (f"{cpu}, {torch.get_num_threads()} threads; torch {torch.__version__}, OpenCV "
            f"{cv2.__version__}, ONNX Runtime {onnxruntime.__version__}, Python "
            f"{platform.python_version()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", nargs="+", default=["yolov3", "yolov3-tiny"],
                   choices=["yolov3", "yolov3-tiny"])
    p.add_argument("--img-size", nargs="+", type=int, default=[320, 416, 608])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=7, help="timed rounds per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per engine")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--e2e", type=int, default=None, metavar="N",
                   help="images for the end-to-end yolov3 detect run (default: 50 for a full "
                   "table, 0 for a single row)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    single = len(args.model) == 1 and len(args.img_size) == 1 and len(args.batch) == 1
    e2e = args.e2e if args.e2e is not None else (0 if single else 50)
    print(f"machine: {machine()}")
    keys = ["opencv", "plain", "fast-eager", "fast-trace"]
    keys += ["torch-compile"] * args.compile + ["onnxruntime"] + ["bf16-trace"] * BF16
    keys += ["int8-ort"] * bool(INT8)
    header = ("| model | size | batch | " + " | ".join(keys)
              + " | best/opencv | best/opencv, fastest runs |")
    print("median ms per batch (images/s); * = detections differ from plain; last column: the "
          "ratio of each engine's fastest run, less sensitive to other load on the machine\n")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    ratios: dict[tuple, float] = {}
    bf16_ratios: dict[tuple, float] = {}
    int8_ratios: dict[tuple, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.model:
            if name == "yolov3":
                weights = tmp / "yolov3-random.weights"
                random_yolov3_weights(weights)
            else:
                weights = fetch_weights(name)
            for size in args.img_size:
                for batch in args.batch:
                    row = measure_row(name, weights, size, batch, args, tmp)
                    ours = [row[k] for k in PROJECT if k in row and row[k]["same"]]
                    best = min(r["ms"] for r in ours)
                    best_min = min(r["min_ms"] for r in ours) / row["opencv"]["min_ms"]
                    cells = [f"{row[k]['ms']:.1f} ({row[k]['ips']:.1f})"
                             + ("*" if row[k]["same"] is False else "") for k in keys]
                    ratios[name, size, batch] = this = best / row["opencv"]["ms"]
                    if BF16:
                        bf16_ratios[name, size, batch] = (row["bf16-trace"]["ms"]
                                                          / row["opencv"]["ms"])
                    if INT8:
                        int8_ratios[name, size, batch] = (row["int8-ort"]["ms"]
                                                          / row["opencv"]["ms"])
                    print(f"| {name} | {size} | {batch} | " + " | ".join(cells)
                          + f" | {this:.2f} | {best_min:.2f} |", flush=True)
                    if args.compile:
                        print(f"  (first call of torch-compile: "
                              f"{row['torch-compile']['first_s']:.0f} s; fast-trace: "
                              f"{row['fast-trace']['first_s']:.1f} s)")
        if e2e:
            print(f"\nend to end, 416, batch 8, {args.threads} loader workers:")
            for name in args.model:
                weights = tmp / "yolov3-random.weights" if name == "yolov3" else fetch_weights(name)
                for line in end_to_end(name, weights, e2e, args.threads, tmp):
                    print(line, flush=True)
    ratio = ratios.get(("yolov3", 416, 1), list(ratios.values())[-1])
    print(f"ratio_vs_opencv={ratio:.3f}")
    if BF16:  # bf16 detections are not bit-equal to fp32's (tests/test_inference_precision.py)
        bf16 = bf16_ratios.get(("yolov3", 416, 1), list(bf16_ratios.values())[-1])
        print(f"ratio_bf16_vs_opencv={bf16:.3f}")
    else:
        print("ratio_bf16_vs_opencv: not measured, this CPU has no native bfloat16")
    if INT8:  # nor are int8's (tests/test_int8.py)
        int8 = int8_ratios.get(("yolov3", 416, 1), list(int8_ratios.values())[-1])
        print(f"ratio_int8_vs_opencv={int8:.3f} ({', '.join(INT8)})")
    else:
        print("ratio_int8_vs_opencv: not measured, this CPU has no int8 dot products (VNNI or "
              "AMX): ONNX Runtime's int8 kernels would gain little over fp32 there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
