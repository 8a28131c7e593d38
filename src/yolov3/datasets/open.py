"""``--data``: which format a path is, and the dataset it describes.

A dataset YAML (``.yaml``/``.yml``)::

    format: yolo         # yolo (default), coco or voc
    path: /data/mine     # root of the relative paths below (default: the YAML's folder)
    train: images/train  # yolo: image folders, list files or images (one or a list)
    val: images/val      # coco: an annotation JSON, or {annotations: JSON, images: DIR}
    names: [cat, dog]    # voc: an ImageSets/Main split name (default: the split's own name)

``names`` (a list, or a mapping index -> name) is required for yolo, optional for voc (default:
every object name, sorted) and must match the JSON's categories for coco.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from yolov3.choices import DATASET_FORMS
from yolov3.classes import check_names, read_names
from yolov3.datasets.base import DetectionDataset, SourcePaths
from yolov3.datasets.coco import CocoDataset, split_of_json
from yolov3.datasets.problems import Problems
from yolov3.datasets.voc import VocDataset, find_voc_folders, voc_splits
from yolov3.datasets.yolo_txt import YoloDataset, collect_images, read_darknet_data, resolve
from yolov3.errors import DataError
from yolov3.fileio import expand_home

_YAML_KEYS = {"format", "path", "names", "nc", "download"}
DIR_YAMLS = ("data.yaml", "dataset.yaml")


def detect_format(data: str | Path) -> tuple[str, Path]:
    """(``yaml`` | ``coco`` | ``voc`` | ``darknet``, the file or folder to read)."""
    path = expand_home(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. {DATASET_FORMS}")
    if path.is_dir():
        found = [("voc", path)] if find_voc_folders(path) else []
        found += [("yaml", path / y) for y in DIR_YAMLS if (path / y).is_file()]
        if len(found) == 1:
            return found[0]
        what = "is ambiguous (it holds " + " and ".join(str(p) for _, p in found) + ")"
        raise DataError(f"{path}: {what if found else 'is not a dataset folder'}. {DATASET_FORMS}")
    kind = {".yaml": "yaml", ".yml": "yaml", ".json": "coco", ".data": "darknet"}
    if path.suffix.lower() not in kind:
        raise DataError(f"{path}: unknown dataset description. {DATASET_FORMS}")
    return kind[path.suffix.lower()], path


def open_dataset(
    data: str | Path,
    split: str = "val",
    images: str | Path | None = None,
    strict: bool = False,
) -> DetectionDataset:
    """The ``split`` (``train``, ``val``, ...; ``all`` for a VOC folder) of the dataset ``data``
    describes, in any of the :data:`~yolov3.choices.DATASET_FORMS`. A COCO JSON is one set,
    whatever ``split``. ``images`` is the image folder of a COCO JSON (a :class:`DataError`
    for a dataset of another format, which names its own images). Bad labels are skipped and
    listed in ``dataset.problems``; with ``strict`` the first is a :class:`DataError`."""
    check_images_option(data, images)
    kind, path = detect_format(data)
    images = Path(images) if images is not None else None
    if kind == "coco":
        return CocoDataset(path, images, strict)
    if kind == "voc":
        return VocDataset(path, split, strict=strict)
    if kind == "darknet":
        return _open_darknet(path, split, strict)
    return _open_yaml(path, split, images, strict)


def check_images_option(data: str | Path, images: str | Path | None) -> None:
    """A :class:`DataError` when ``images`` (``--images``, the image folder of a COCO JSON)
    is given for a dataset of another format (VOC, darknet, a YOLO or VOC YAML), which names
    its own images: an option a dataset cannot honour is refused, not ignored."""
    if images is None:
        return
    kind, path = detect_format(data)
    if kind == "yaml":
        kind = _read_yaml(path).get("format", "yolo")
    if kind != "coco":
        own = {"voc": "are in its JPEGImages/ or images/ folder",
               "darknet": "its train and valid lists name"}.get(kind, "its splits name")
        raise DataError(f"--images {images}: is the image folder of a COCO annotation JSON; "
                        f"{path} is a {kind} dataset, whose images {own}: leave --images out")


def dataset_splits(data: str | Path) -> list[str]:
    """The splits ``data`` defines, in order (what ``yolov3 data convert`` writes)."""
    kind, path = detect_format(data)
    if kind == "coco":
        return [split_of_json(path)]
    if kind == "voc":
        return voc_splits(path)
    if kind == "darknet":
        fields = read_darknet_data(path)
        return [s for s, key in (("train", "train"), ("val", "valid")) if key in fields]
    cfg = _read_yaml(path)
    splits = [k for k in cfg if k not in _YAML_KEYS]
    if cfg.get("format", "yolo") == "voc" and not splits:
        return voc_splits(_yaml_root(path, cfg))
    return splits


def _open_darknet(path: Path, split: str, strict: bool) -> DetectionDataset:
    """Darknet's ``.data``: ``train`` / ``valid`` image lists and a ``names`` file. Relative
    paths are tried against the file's folder, its parent (darknet's root) and the current
    folder."""
    fields = read_darknet_data(path)
    key = {"val": "valid"}.get(split, split)
    for needed in (key, "names"):
        if needed not in fields:
            raise DataError(f"{path}: has no '{needed} = ...' line (for the {split} split)")
    bases = [path.parent, path.parent.parent, Path.cwd()]
    names_file = resolve(fields["names"], bases)
    names = read_names(names_file)
    if "classes" in fields and fields["classes"] != str(len(names)):
        raise DataError(f"{path}: classes = {fields['classes']} but {fields['names']} has "
                        f"{len(names)} names")
    problems = Problems(strict)
    sources = SourcePaths({names_file})
    images = collect_images(resolve(fields[key], bases), path.parent, problems, sources)
    return YoloDataset(images, names, path, split, problems, sources)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read the dataset YAML ({exc})") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: a dataset YAML is a mapping (format, path, train, val, names)")
    if cfg.get("format", "yolo") not in ("yolo", "coco", "voc"):
        raise DataError(f"{path}: format {cfg['format']!r} is not one of yolo, coco, voc")
    return cfg


def _yaml_root(path: Path, cfg: dict[str, Any]) -> Path:
    root = expand_home(str(cfg.get("path") or "."))
    return root if root.is_absolute() else path.parent / root


def _yaml_names(path: Path, cfg: dict[str, Any]) -> list[str] | None:
    names = cfg.get("names")
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):
            raise DataError(f"{path}: 'names' keys must be the class indices 0..{len(names) - 1}")
        names = [names[k] for k in range(len(names))]
    if names is not None and (not isinstance(names, list) or not names):
        raise DataError(f"{path}: 'names' must be a non-empty list of class names")
    if names is not None and "nc" in cfg and cfg["nc"] != len(names):
        raise DataError(f"{path}: nc = {cfg['nc']} but 'names' has {len(names)} entries")
    if names is None:
        return None
    for k, name in enumerate(names):
        if isinstance(name, list | dict):
            raise DataError(f"{path}: class {k} of 'names' is {name!r}, not a name")
    return check_names(["" if n is None else str(n) for n in names], str(path))


def _open_yaml(path: Path, split: str, images: Path | None, strict: bool) -> DetectionDataset:
    cfg = _read_yaml(path)
    fmt, root, names = cfg.get("format", "yolo"), _yaml_root(path, cfg), _yaml_names(path, cfg)
    splits = [k for k in cfg if k not in _YAML_KEYS]
    if fmt == "voc":
        dataset = VocDataset(root, str(cfg.get(split, split)), names, strict)
        dataset.split = split
        dataset.sources.files.add(path)
        dataset.sources.roots.add(path.parent)
        return dataset
    if split not in splits:
        raise DataError(f"{path}: has no '{split}' split (it has: "
                        f"{', '.join(map(str, splits)) or 'none'})")
    entry = cfg[split]
    if fmt == "coco":
        if isinstance(entry, dict):
            if images is None and "images" in entry:
                images = resolve(str(entry["images"]), [root])
            entry = entry.get("annotations")
        dataset = CocoDataset(resolve(str(entry), [root]), images, strict)
        if names is not None and names != dataset.names:
            raise DataError(f"{path}: 'names' differ from the categories of {dataset.source}")
        dataset.split = split
        dataset.sources.files.add(path)
        dataset.sources.roots |= {path.parent, root}
        return dataset
    if names is None:
        raise DataError(f"{path}: a yolo dataset YAML needs 'names' (the class names)")
    if not (isinstance(entry, str) or (isinstance(entry, list) and entry
            and all(isinstance(e, str) for e in entry))):
        raise DataError(f"{path}: '{split}' must be an image folder, a list file or an image, "
                        f"or a list of those; not {entry!r}")
    problems = Problems(strict)
    sources = SourcePaths(roots={root})
    images = collect_images(entry, root, problems, sources)
    return YoloDataset(images, names, path, split, problems, sources)
