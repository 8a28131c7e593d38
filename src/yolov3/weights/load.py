"""Turning ``--model`` / ``--weights`` into a network: the one loading policy of every command
and of the Python API (:func:`load_model`, :func:`from_darknet`), and the start of training from
pretrained weights (:func:`load_pretrained`), also when the number of classes differs.

Fine-tuning loads everything but the class-dependent head convolutions (the 1x1 convolutions
before each [yolo] layer), as darknet does with ``darknet53.conv.74`` or a COCO detector.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from yolov3.errors import WeightsError
from yolov3.model.cfg import BUILTIN_CFGS, Anchors, override_head
from yolov3.model.layers import YOLOLayer
from yolov3.model.network import YOLOv3, build_model
from yolov3.weights.checkpoint import is_checkpoint, load_checkpoint, model_from_checkpoint
from yolov3.weights.darknet import count_file_floats, count_floats, load_darknet_weights
from yolov3.weights.official import resolve_weights

log = logging.getLogger("yolov3")


def _infer_num_classes(model: YOLOv3, floats: int) -> int | None:
    """The class count for which ``model``'s cfg holds exactly ``floats`` floats, if any: the
    count is linear in the number of classes (only the head convolutions depend on it)."""
    def floats_for(classes: int) -> int:
        with torch.device("meta"):  # shapes only: no weights made
            return count_floats(YOLOv3(override_head(model.sections, num_classes=classes)))

    base, per_class = floats_for(1), floats_for(2) - floats_for(1)
    classes, rest = divmod(floats - base, per_class)
    return classes + 1 if rest == 0 and classes >= 0 else None


def head_layers(model: YOLOv3) -> set[int]:
    """Indices of the class-dependent layers: the convolutions just before each [yolo]."""
    return {i - 1 for i, layer in enumerate(model.layers) if isinstance(layer, YOLOLayer)}


def transfer_matching(model: YOLOv3, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy every tensor of ``state`` whose name and shape fit ``model``; return those skipped.

    Only the class-dependent heads may differ: any other tensor that does not fit means that
    ``state`` (from ``source``) is another architecture, a :class:`WeightsError`."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    heads = head_layers(model)
    foreign = [k for k in own if k not in fitting and int(k.split(".")[1]) not in heads]
    if foreign:
        theirs = state.get(foreign[0])
        shape = "missing" if theirs is None else f"of shape {tuple(theirs.shape)}"
        raise WeightsError(
            f"{source}: another architecture than this model: {len(foreign)} tensors outside "
            f"the class-dependent heads do not fit, the first {foreign[0]} (here of shape "
            f"{tuple(own[foreign[0]].shape)}, there {shape}); use weights made for this cfg"
        )
    model.load_state_dict(fitting, strict=False)
    return sorted(k for k in own if k not in fitting)


def load_pretrained(model: YOLOv3, weights: str | Path) -> str:
    """Load weights (an official name, a darknet file or a yolov3 checkpoint) into ``model``.

    Tensors that do not fit (the class-dependent heads of a detector trained on other classes)
    keep their initialisation. Returns a one-line summary of what was loaded.
    """
    path = resolve_weights(weights)
    if is_checkpoint(path):
        state = load_checkpoint(path)["model"]
        source = f"checkpoint {path.name}"
    else:
        floats = count_file_floats(path)
        if floats == count_floats(model):
            load_darknet_weights(model, path)
            return f"loaded all of {path.name}"
        classes = _infer_num_classes(model, floats)
        if classes is None:  # a backbone such as darknet53.conv.74: a prefix of the layers
            report = load_darknet_weights(model, path)
            return (f"loaded {report.layers_loaded} of {report.layers_total} conv layers from "
                    f"{path.name}; the rest keep their initialisation")
        donor = YOLOv3(override_head(model.sections, num_classes=classes))
        load_darknet_weights(donor, path)
        state = donor.state_dict()
        source = f"{path.name} ({classes} classes)"
    skipped = transfer_matching(model, state, str(path))
    transfer_box_channels(model, state)
    heads = sorted({k.split(".")[1] for k in skipped if k.startswith("layers.")})
    return (f"loaded {source} except {len(skipped)} tensors that do not fit"
            + (f" (layers {', '.join(heads)}: the class-dependent heads, whose box and "
               "objectness channels were copied)" if heads else ""))


def transfer_box_channels(model: YOLOv3, state: dict[str, torch.Tensor]) -> None:
    """Copy the class-independent part of each head convolution that did not fit whole.

    A head has ``5 + C`` output channels per anchor: ``tx, ty, tw, th, to``, then one per
    class. When only ``C`` differs, the first five of each anchor (box and objectness) mean the
    same in both models, so a fine-tuned detector starts from trained boxes and objectness and
    learns only its new class channels from scratch.
    """
    own = model.state_dict()
    with torch.no_grad():
        for i in head_layers(model):
            anchors = model.layers[i + 1].num_anchors
            for name in (f"layers.{i}.conv.weight", f"layers.{i}.conv.bias"):
                theirs, mine = state.get(name), own.get(name)
                if theirs is None or mine is None or theirs.shape == mine.shape:
                    continue
                if theirs.shape[1:] != mine.shape[1:] or theirs.shape[0] % anchors:
                    continue
                src = theirs.view(anchors, -1, *theirs.shape[1:])
                mine.view(anchors, -1, *mine.shape[1:])[:, :5] = src[:, :5]


def first_difference(model: YOLOv3, other: YOLOv3) -> str | None:
    """How ``other``'s layers differ from ``model``'s (the first tensor whose name or shape
    does not match), or ``None`` when both have the same architecture."""
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in other.state_dict().items()}
    if mine == theirs:
        return None
    for key in [*mine, *theirs]:
        if mine.get(key) != theirs.get(key):
            return (f"{key} is {mine.get(key, 'missing')} in one and "
                    f"{theirs.get(key, 'missing')} in the other")
    return None


#: The network of a command given neither ``--model`` nor ``--weights``.
DEFAULT_MODEL = "yolov3"
#: The ``--weights`` value of an untrained network (the cfg's random initialisation).
UNTRAINED = "none"


def is_untrained(weights: str | Path | None) -> bool:
    """``--weights none``: the cfg's random initialisation, on purpose."""
    return isinstance(weights, str) and weights.lower() == UNTRAINED


def from_darknet(
    cfg: str | Path,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    anchors: Anchors | None = None,
) -> YOLOv3:
    """A network in eval mode from a darknet cfg (a built-in name such as ``yolov3-tiny``, or a
    path), optionally with another class count or anchor set, and darknet weights (an official
    name such as ``yolov3-tiny``, fetched and cached on first use, or a path; None: untrained).
    A weights file that covers only the first layers (``darknet53.conv.74``) loads those."""
    model = build_model(cfg, num_classes=num_classes, anchors=anchors)
    if weights is not None:
        load_darknet_weights(model, resolve_weights(weights))
    return model.eval()


def load_model(
    cfg: str | Path | None, weights: str | Path | None
) -> tuple[YOLOv3, list[str] | None]:
    """The network that ``--model cfg`` and ``--weights weights`` name, in eval mode, and its
    class names when the weights carry them: the one policy of every command.

    - ``weights`` None: the official weights of ``cfg`` (default ``yolov3``), which must then
      be a built-in architecture; ``none`` (:data:`UNTRAINED`): ``cfg`` untrained.
    - An official name brings its own network: ``weights="yolov3-tiny"`` alone is yolov3-tiny.
    - A yolov3 checkpoint brings its network (cfg, anchors) and class names: ``cfg`` may be
      left None; when given it must have the checkpoint's architecture (its class count
      aside), else :class:`WeightsError`.
    - A darknet file must cover the whole network of ``cfg`` (default ``yolov3``).
    """
    if weights is None:
        weights = cfg or DEFAULT_MODEL
        if weights not in BUILTIN_CFGS:
            raise WeightsError(f"--model {cfg} has no official weights: give --weights FILE "
                               f"(or --weights {UNTRAINED} for an untrained network)")
    elif is_untrained(weights):
        return build_model(cfg or DEFAULT_MODEL).eval(), None
    elif cfg is None and weights in BUILTIN_CFGS:
        cfg = weights
    path = resolve_weights(weights)
    if is_checkpoint(path):
        payload = load_checkpoint(path)
        model = model_from_checkpoint(payload, path)
        if cfg is not None:
            with torch.device("meta"):  # only the shapes are compared: no weights made
                other = build_model(cfg, model.num_classes)
            difference = first_difference(model, other)
            if difference:
                raise WeightsError(
                    f"{path}: this checkpoint holds another network than {cfg} "
                    f"({difference}); leave out the cfg (--model) to use the checkpoint's "
                    "own network"
                )
        return model, list(payload["names"])
    cfg = cfg or DEFAULT_MODEL
    model = build_model(cfg)
    report = load_darknet_weights(model, path)
    if not report.complete:
        raise WeightsError(
            f"{path}: covers only {report.layers_loaded} of the {report.layers_total} conv "
            f"layers of {cfg} (a backbone to train from, or weights of another cfg); "
            "detection needs the weights of the whole network"
        )
    return model.eval(), None
