"""Turning ``--model`` / ``--weights`` into a network: the one loading policy of every command
and of the Python API (:func:`load_model`, :func:`from_darknet`), and the start of training from
pretrained weights (:func:`load_pretrained`), also when the number of classes differs.

Fine-tuning loads everything but the class-dependent head convolutions (the 1x1 convolutions
before each [yolo] layer), as darknet does with ``darknet53.conv.74`` or a COCO detector.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch import nn

from yolov3.errors import WeightsError
from yolov3.model.cfg import (
    BUILTIN_CFGS,
    DEFAULT_MODEL,
    Anchors,
    builtin_cfg_path,
    override_head,
)
from yolov3.model.layers import YOLOLayer
from yolov3.model.network import YOLOv3, build_model
from yolov3.weights.checkpoint import is_checkpoint, load_checkpoint, model_from_checkpoint
from yolov3.weights.darknet import count_file_floats, count_floats, load_darknet_weights
from yolov3.weights.official import BACKBONES, resolve_weights

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


#: The ``model.weights`` of training by default: the backbone of the model (:func:`backbone_of`).
BACKBONE = "backbone"


def is_backbone(weights: str | Path | None) -> bool:
    """``model.weights: backbone``: the official backbone of whichever model is trained."""
    return isinstance(weights, str) and weights.lower() == BACKBONE


def _first_layers(cfg: str, layers: int) -> YOLOv3:
    """The built-in ``cfg`` cut to its first ``layers`` layers, shapes only (no weights)."""
    with torch.device("meta"):
        model = build_model(cfg)
    model.layers = nn.ModuleList(list(model.layers)[:layers])
    return model


def _signature(model: YOLOv3, layers: int) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
    """Each of the first ``layers`` layers as its kind and the shapes of its tensors."""
    return [(type(m).__name__, tuple(tuple(t.shape) for t in m.state_dict().values()))
            for m in list(model.layers)[:layers]]


def _backbone_difference(model: YOLOv3, name: str) -> str | None:
    """How the first layers of ``model`` differ from those the backbone ``name`` holds, or
    None when they are the same (kind of layer and tensor shapes, layer by layer)."""
    cfg, layers = BACKBONES[name]
    if len(model.layers) <= layers:
        return f"it has {len(model.layers)} layers, not more than the {layers} of {name}"
    mine, theirs = _signature(model, layers), _signature(_first_layers(cfg, layers), layers)
    for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if a != b:
            return f"layer {i} is {_describe_layer(a)} here and {_describe_layer(b)} in {cfg}"
    return None


def _describe_layer(signature: tuple[str, tuple[tuple[int, ...], ...]]) -> str:
    kind, shapes = signature
    return f"{kind} {shapes[0]}" if shapes else kind


def _cfg_label(model: YOLOv3) -> str:
    """The model's cfg as the user named it: a built-in name, else the cfg's file."""
    source = model.sections[0].source
    stem = Path(source).stem
    if stem in BUILTIN_CFGS and Path(source) == builtin_cfg_path(stem):
        return stem
    return source


def backbone_of(model: YOLOv3) -> str | None:
    """The official backbone whose layers are the first layers of ``model``: darknet53.conv.74
    for yolov3 and yolov3-spp, yolov3-tiny.conv.15 for yolov3-tiny, and the same for a custom
    cfg that starts as one of them; None for a cfg that starts otherwise."""
    return next((name for name in BACKBONES if _backbone_difference(model, name) is None), None)


@functools.cache
def packaged_floats() -> dict[str, int]:
    """How many floats (after the header) a darknet file of each packaged network holds: the
    built-in cfgs (yolov3, yolov3-spp, yolov3-tiny, 80 classes) and the official backbones,
    their first layers (darknet53.conv.74, yolov3-tiny.conv.15). Counted on shapes only."""
    counts = {}
    for cfg in BUILTIN_CFGS:
        with torch.device("meta"):
            counts[cfg] = count_floats(build_model(cfg))
    for name, (cfg, layers) in BACKBONES.items():
        counts[name] = count_floats(_first_layers(cfg, layers))
    return counts


def packaged_network(floats: int) -> str | None:
    """The packaged network (:func:`packaged_floats`) whose darknet file holds exactly
    ``floats`` floats, if one does."""
    return next((name for name, n in packaged_floats().items() if n == floats), None)


def _cfg_of_darknet_file(path: Path) -> str:
    """The built-in cfg of a darknet weights file given without a cfg: the packaged network
    whose float count it has (a backbone: the cfg it is the first layers of), said on one line;
    :data:`DEFAULT_MODEL` for a file that fits none (loading it then says how it does not)."""
    floats = count_file_floats(path)
    name = packaged_network(floats)
    if name is None:
        return DEFAULT_MODEL
    cfg, layers = BACKBONES.get(name, (name, None))
    which = name if layers is None else f"{name}, the first {layers} layers of {cfg}"
    log.info("%s holds the %s floats of %s: using --model %s", path.name, f"{floats:,}", which,
             cfg)
    return cfg


def load_pretrained(model: YOLOv3, weights: str | Path) -> str:
    """Load weights (an official name, a darknet file or a yolov3 checkpoint) into ``model``.

    ``backbone`` (:data:`BACKBONE`) is the official backbone of the model
    (:func:`backbone_of`); a cfg that no official backbone starts has none, and keeps its
    initialisation (training from scratch), as the summary says. Tensors that do not fit (the
    class-dependent heads of a detector trained on other classes) keep their initialisation.
    Weights of another architecture are a :class:`WeightsError`: a checkpoint whose tensors
    outside the heads differ, or a darknet backbone (by its float count, the first layers of
    a built-in cfg) whose layers are not this model's first layers. Returns a one-line summary
    of what was loaded.
    """
    cfg_name = _cfg_label(model)
    chosen = ""
    if is_backbone(weights):
        name = backbone_of(model)
        if name is None:
            known = "; ".join(f"{b} starts {cfg}" for b, (cfg, _) in BACKBONES.items())
            return (f"{cfg_name}: no official backbone fits its first layers ({known}): training "
                    "from scratch (random initialisation); give --weights FILE to start from "
                    "pretrained weights")
        weights, chosen = name, f" (the backbone of {cfg_name})"
    path = resolve_weights(weights)
    if is_checkpoint(path):
        state = load_checkpoint(path)["model"]
        source = f"checkpoint {path.name}"
    else:
        floats = count_file_floats(path)
        if floats == count_floats(model):
            load_darknet_weights(model, path)
            return f"loaded all of {path.name}"
        claimed = next((b for b in BACKBONES if packaged_floats()[b] == floats), None)
        if claimed is not None:  # a backbone: it must be this model's first layers
            difference = _backbone_difference(model, claimed)
            if difference is not None:
                cfg, layers = BACKBONES[claimed]
                own = backbone_of(model)
                raise WeightsError(
                    f"{path}: holds {floats:,} floats, the backbone {claimed} (the first "
                    f"{layers} layers of {cfg}), which does not fit {cfg_name}: {difference}. "
                    + (f"This model's backbone is {own} (--weights {BACKBONE})" if own else
                       "No official backbone fits this model: train it from scratch "
                       "(--weights none) or give weights made for it"))
        classes = _infer_num_classes(model, floats) if claimed is None else None
        if classes is None:  # a backbone such as darknet53.conv.74: a prefix of the layers
            report = load_darknet_weights(model, path)
            return (f"loaded {report.layers_loaded} of {report.layers_total} conv layers from "
                    f"{path.name}{chosen}; the rest keep their initialisation")
        donor = YOLOv3(override_head(model.sections, num_classes=classes))
        load_darknet_weights(donor, path)
        state = donor.state_dict()
        source = f"{path.name} ({classes} classes)"
    skipped = transfer_matching(model, state, str(path))
    own = model.state_dict()
    extra = [k for k in state if k not in own]
    if extra:
        raise WeightsError(
            f"{path}: another architecture than this model: it holds {len(extra)} tensors "
            f"that this model does not have, the first {extra[0]} of shape "
            f"{tuple(state[extra[0]].shape)}; use weights made for this cfg")
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
    - A darknet file must cover the whole network of ``cfg``; without ``cfg``, the packaged
      network whose float count it has (:func:`packaged_network`; a backbone is the first
      layers of one, and cannot detect), else ``yolov3``.
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
    cfg = cfg or _cfg_of_darknet_file(path)
    model = build_model(cfg)
    report = load_darknet_weights(model, path)
    if not report.complete:
        raise WeightsError(
            f"{path}: covers only {report.layers_loaded} of the {report.layers_total} conv "
            f"layers of {cfg} (a backbone to train from, or weights of another cfg); "
            "detection needs the weights of the whole network"
        )
    return model.eval(), None
