"""The named choices that the library takes and the command line offers: precisions, inference
backends, export and dataset formats, the forms of a dataset (the packaged training configs:
:mod:`yolov3.configs`).

A leaf module (no torch, no numpy): the command line's parsers read their choices and help
texts here without loading the modules that implement them, which import these names from
here in turn."""

from __future__ import annotations

#: The number formats inference runs in (:mod:`yolov3.inference.precision`).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
#: How many images int8 is calibrated on by default (:mod:`yolov3.inference.quantize`).
DEFAULT_CALIB_IMAGES = 64
#: The engines a detector runs on (:mod:`yolov3.backends`).
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
#: The files a model is exported as (:mod:`yolov3.export`).
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
#: The file name suffix of each export format.
EXPORT_SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript"}
#: The number formats each export format is written in (see :mod:`yolov3.export`).
EXPORT_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnx": ("fp32", "fp16", "int8"), "torchscript": ("fp32", "fp16", "bf16"),
}
#: The dataset formats written by ``yolov3 data convert`` (:mod:`yolov3.datasets.convert`).
DATASET_FORMATS: tuple[str, ...] = ("coco", "yolo", "voc")
#: What ``--data`` takes (:func:`yolov3.datasets.open.open_dataset`).
DATASET_FORMS = (
    "--data takes one of: a dataset YAML (.yaml/.yml with format, path, train, val, names); "
    "a COCO annotation JSON (.json; images from --images DIR, else an images/ folder beside "
    "it, else its own folder); a Pascal VOC root folder (Annotations/ or annots/ with .xml "
    "files, and JPEGImages/ or images/); a darknet .data file (classes, train, valid, names); "
    "or a folder holding data.yaml"
)

#: ``yolov3 detect``'s score threshold (objectness x class probability) and darknet's COCO
#: evaluation's, and the IoU of the per-class NMS of both (:class:`~yolov3.inference.options.
#: DetectOptions`).
DETECT_CONF = 0.25
EVAL_CONF = 0.005
NMS_IOU = 0.45
#: What ``conf`` and ``iou`` are, in the messages that refuse them.
CONF_MEANING = "a score threshold: objectness x class probability"
IOU_MEANING = "the overlap above which the per-class NMS drops the weaker box"
