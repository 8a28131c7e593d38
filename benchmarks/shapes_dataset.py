"""Write the generated shapes dataset (the demo's, :class:`SyntheticShapes`) to a folder as a
YOLO txt dataset of any size, so that a recipe can be measured on a multi-class set larger
than kangaroo with the command a user types (`yolov3 train --config finetune --data DIR`).

    .venv/bin/python benchmarks/shapes_dataset.py runs/shapes3000 --train 3000 --val 200
        [--size 256] [--seed 0] [--quality 95]

Images are JPEGs (decoded like a user's photos); labels are exact (the drawn polygons' boxes).
Writes images/{train,val}/*.jpg, labels/{train,val}/*.txt and data.yaml; refuses a folder
that is not empty.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from yolov3.datasets.synthetic import SHAPES, SyntheticShapes
from yolov3.datasets.yolo_txt import data_yaml, label_text


def write_split(dataset: SyntheticShapes, out: Path, quality: int) -> int:
    """Write ``dataset``'s images and label files under ``out``; returns the boxes written."""
    images, labels = out / "images" / dataset.split, out / "labels" / dataset.split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    boxes = 0
    for i in range(len(dataset)):
        ann = dataset.annotations(i)
        name = f"{i:06d}"
        image = dataset.read_image(i)
        cv2.imwrite(str(images / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
        (labels / f"{name}.txt").write_text(label_text(ann.labels, ann.boxes, ann.size))
        boxes += len(ann.labels)
    return boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=3000, help="training images")
    parser.add_argument("--val", type=int, default=200, help="validation images")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty: give a new folder")
    for split, n in (("train", args.train), ("val", args.val)):
        dataset = SyntheticShapes(split, num_images=n, image_size=args.size, seed=args.seed)
        boxes = write_split(dataset, args.out, args.quality)
        print(f"{split}: {n} images, {boxes} boxes")
    spec = {"path": ".", "train": "images/train", "val": "images/val", "names": list(SHAPES)}
    (args.out / "data.yaml").write_bytes(data_yaml(
        spec, f"# generated shapes, seed {args.seed}: benchmarks/shapes_dataset.py\n"))
    print(f"wrote {args.out}/data.yaml")


if __name__ == "__main__":
    main()
