"""``make demo``: the project's main job on built-in data.

Runs darknet's official yolov3-tiny (fetched and cached on first use) on two real photos that
ship with scikit-image, and writes annotated pictures and detections.json under runs/demo.
"""

from __future__ import annotations

import sys
from pathlib import Path

from yolov3.cli.main import main as cli


def demo_photos() -> list[Path]:
    """coffee.png (a cup) and motorcycle_left.png (a motorbike) from scikit-image's wheel."""
    try:
        import skimage
    except ImportError:
        sys.exit("the demo photos come with scikit-image: pip install scikit-image")
    folder = Path(skimage.__file__).parent / "data"
    return [folder / "coffee.png", folder / "motorcycle_left.png"]


def main(out: str = "runs/demo") -> int:
    print("== Detection with the official yolov3-tiny weights on two real photos ==")
    return cli(["detect", *map(str, demo_photos()), "--model", "yolov3-tiny",
                "--out", f"{out}/detect"])


if __name__ == "__main__":
    sys.exit(main())
