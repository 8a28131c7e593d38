"""``make demo``: the project's main job on built-in data, in a few minutes on a laptop CPU.

1. Fine-tunes darknet's official yolov3-tiny (fetched and cached on first use) on the generated
   shapes dataset with the packaged ``demo`` config, evaluates it on the validation split
   (COCO AP), and writes annotated validation pictures and loss/AP curves.
2. Runs the official yolov3-tiny on two real photos that ship with scikit-image.

Everything is written under ``runs/demo``.
"""

from __future__ import annotations

import json
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
    train_dir = Path(out) / "train"
    print("== 1. Fine-tuning yolov3-tiny on the generated shapes dataset (about 4 minutes) ==")
    code = cli(["train", "--config", "demo", "--out", str(train_dir), "--overwrite"])
    if code:
        return code
    results = json.loads((train_dir / "results.json").read_text())
    print(f"validation AP50 {results['final']['AP50']:.3f}, AP {results['final']['AP']:.3f} "
          f"after {results['iterations']} iterations ({results['wall_time_s']:.0f} s); "
          f"curves: {train_dir / 'curves.png'}, pictures: {train_dir / 'val_images'}")
    print("\n== 2. Detection with the official yolov3-tiny weights on two real photos ==")
    return cli(["detect", *map(str, demo_photos()), "--model", "yolov3-tiny",
                "--out", f"{out}/detect", "--overwrite"])


if __name__ == "__main__":
    sys.exit(main())
