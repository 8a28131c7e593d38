"""Detections as YOLO txt labels, darknet's ``class xc yc w h`` (fractions of the image size),
laid out so that the output folder is a dataset that ``--data OUTDIR`` opens (``yolov3 val``,
``yolov3 train``)::

    OUTDIR/data.yaml                 the class names; train and val: images
    OUTDIR/images/STEM.EXT           a link to each source image (a downloaded one: its bytes)
    OUTDIR/labels/STEM.txt           its detections (empty: nothing found)
    OUTDIR/labels/VIDEO_FRAME.txt    those of each processed video frame (frame 0-based, six
                                     digits); no image goes with them, so they are not part of
                                     the dataset

With scores (``--save-conf``) each line has a sixth field, the score, which the YOLO txt reader
does not take: no data.yaml is written then. ``OUTDIR/.yolov3-detect`` marks images/ and
labels/ as this writer's, so that the next run replaces them; folders of that name holding
anything else are never touched."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from yolov3.datasets.yolo_txt import data_yaml, label_text
from yolov3.errors import YoloError
from yolov3.images import image_extensions
from yolov3.inference.detector import Detections
from yolov3.inference.sources import ImageSource

MARKER = ".yolov3-detect"
_MARK_TEXT = ("images/ and labels/ in this folder were written by yolov3 detect --save-txt; the "
              "next run with --save-txt here replaces them\n")


def earlier_labels(out: Path) -> list[Path]:
    """What an earlier run wrote in ``out``'s images/ and labels/ (to be replaced); a
    :class:`YoloError` when those folders, or a data.yaml, are there and not this writer's."""
    earlier = [e for folder in (out / "images", out / "labels") if folder.is_dir()
               for e in folder.iterdir()]
    foreign = any(e.is_dir() and not e.is_symlink() for e in earlier)
    if foreign or (not (out / MARKER).is_file() and (earlier or (out / "data.yaml").exists())):
        raise YoloError(f"{out}: holds an images/, labels/ or data.yaml that yolov3 detect did "
                        "not write; --save-txt writes those there: choose another --out")
    return earlier


class LabelFolder:
    """The label outputs of a run in ``out`` (see the module docstring): created at once,
    replacing an earlier run's; a :class:`YoloError` when ``out`` holds an images/, labels/ or
    data.yaml that this writer did not write."""

    def __init__(self, out: Path, names: Sequence[str], with_scores: bool = False) -> None:
        self.images, self.labels, self.with_scores = out / "images", out / "labels", with_scores
        for entry in earlier_labels(out):
            entry.unlink()
        described = out / "data.yaml"
        described.unlink(missing_ok=True)
        self.images.mkdir(exist_ok=True)
        self.labels.mkdir(exist_ok=True)
        (out / MARKER).write_text(_MARK_TEXT)
        if not with_scores:
            header = ("# Written by yolov3 detect --save-txt: the images it ran on (images/) with "
                      "its detections as labels (labels/).\n")
            fields = {"format": "yolo", "train": "images", "val": "images", "names": list(names)}
            described.write_bytes(data_yaml(fields, header))

    def add_image(self, source: ImageSource, stem: str, dets: Detections,
                  image_hw: tuple[int, int]) -> Path:
        """Write the label file ``labels/STEM.txt`` of an image, and put the image beside as
        ``images/STEM.EXT`` (a link to the file where the file system allows, else a copy; a
        downloaded image's bytes). Returns the label file."""
        known = source.suffix.lower() in image_extensions()
        image = self.images / (stem + (source.suffix if known else ".png"))
        if source.path is None:
            image.write_bytes(source.data or b"")
        else:
            try:
                os.symlink(source.path.absolute(), image)
            except OSError:  # no links here (some Windows setups, FAT): a copy
                shutil.copyfile(source.path, image)
        return self._write(stem, dets, image_hw)

    def add_frame(self, stem: str, frame: int, dets: Detections,
                  image_hw: tuple[int, int]) -> Path:
        """Write the label file ``labels/STEM_FRAME.txt`` of a video frame."""
        return self._write(f"{stem}_{frame:06d}", dets, image_hw)

    def _write(self, stem: str, dets: Detections, image_hw: tuple[int, int]) -> Path:
        path = self.labels / f"{stem}.txt"
        scores = dets.scores.numpy() if self.with_scores else None
        path.write_text(label_text(dets.labels.numpy(), dets.boxes.double().numpy(), image_hw,
                                   scores))
        return path
