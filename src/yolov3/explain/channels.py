"""What the channels of one YOLO layer mean: the objectness of each anchor over the image, and
the head's channel layout with the values the model gives them at its most confident cell.

The head convolution before a ``[yolo]`` layer has ``A * (5 + C)`` channels per cell: for each of
the layer's ``A`` anchors ``tx, ty`` (the centre's offset in the cell, through a sigmoid),
``tw, th`` (log-scale factors of the anchor's width and height), ``to`` (objectness, through a
sigmoid) and ``C`` class logits (each through a sigmoid). Channel ``a * (5 + C) + k`` is role
``k`` of anchor ``a`` (darknet's ``entry_index``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from torch import Tensor

from yolov3.errors import YoloError
from yolov3.explain.figure import new_figure
from yolov3.images import letterbox
from yolov3.model.cfg import as_hw
from yolov3.model.network import YOLOv3

#: Colours of the channel roles: x, y offsets; w, h scales; objectness; class scores.
ROLE_COLOURS = ("#4c78a8", "#54a24b", "#e45756", "#b7b7b7")
ROLE_NAMES = ("x, y: centre offsets", "w, h: log size factors", "objectness", "class scores")
HEAT = "inferno"
_ROLE_OF_BOX_CHANNEL = (0, 0, 1, 1, 2)


@dataclass(frozen=True)
class ChannelView:
    """One YOLO layer's output on one image."""

    image: np.ndarray  # (H, W, 3) uint8: the letterboxed network input
    layer: int  # index into model.yolo_layers
    stride: int  # input pixels per cell
    mask: list[int]  # the layer's anchors among all of the cfg's
    anchors: Tensor  # (A, 2) the layer's anchors, input pixels
    raw: Tensor  # (A, h, w, 5+C) the head's logits
    decoded: Tensor  # (A, h, w, 5+C) cx, cy, w, h input pixels, sigmoid objectness and classes

    @property
    def objectness(self) -> Tensor:
        """(A, h, w) sigmoid(to) of each anchor at each cell."""
        return self.decoded[..., 4]

    def peak(self, anchor: int | None = None) -> tuple[int, int, int]:
        """(anchor, row j, column i) of the highest objectness, over all anchors or of one."""
        obj = self.objectness
        if anchor is not None:
            j, i = divmod(int(obj[anchor].argmax()), obj.shape[2])
            return anchor, j, i
        a, rest = divmod(int(obj.argmax()), obj.shape[1] * obj.shape[2])
        return a, *divmod(rest, obj.shape[2])


def explain_channels(
    model: YOLOv3, image: np.ndarray, img_size: int | tuple[int, int] = 416, layer: int = 0
) -> ChannelView:
    """Run ``model`` (as it is: eval mode for inference) on the RGB ``image`` letterboxed to
    ``img_size`` (one side of a square, or (height, width)) and keep YOLO layer ``layer``'s raw
    and decoded output."""
    if not 0 <= layer < len(model.yolo_layers):
        raise YoloError(f"--layer {layer}: the model has YOLO layers 0.."
                        f"{len(model.yolo_layers) - 1}")
    input_hw = as_hw(img_size)
    x, _ = letterbox(image, input_hw)
    yolo = model.yolo_layers[layer]
    with torch.no_grad():
        raw = model(x[None].to(model.anchors.device))[layer].float()
        decoded = yolo.decode(raw, input_hw)
    return ChannelView(
        image=x.permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy(),
        layer=layer,
        stride=input_hw[0] // raw.shape[2],
        mask=list(yolo.mask),
        anchors=yolo.layer_anchors.cpu(),
        raw=raw[0].cpu(),
        decoded=decoded[0].cpu(),
    )


def _draw_objectness(ax: Axes, view: ChannelView, anchor: int) -> None:
    """One anchor's objectness as a heat map over the input (the more confident, the more
    opaque), with the box it predicts at its most confident cell."""
    h, w = view.image.shape[:2]
    obj = view.objectness[anchor].numpy()
    ax.imshow(view.image, extent=(0, w, h, 0))
    ax.imshow(obj, extent=(0, w, h, 0), cmap=HEAT, vmin=0, vmax=1,
              alpha=0.35 + 0.6 * np.sqrt(obj), interpolation="nearest")
    _, j, i = view.peak(anchor)
    s = view.stride
    ax.add_patch(Rectangle((i * s, j * s), s, s, fill=False, edgecolor="cyan", linewidth=1.5))
    cx, cy, bw, bh = view.decoded[anchor, j, i, :4].tolist()
    ax.add_patch(Rectangle((cx - bw / 2, cy - bh / 2), bw, bh, fill=False, edgecolor="cyan",
                           linestyle="--", linewidth=1.2))
    aw, ah = view.anchors[anchor].tolist()
    ax.set_title(f"anchor {view.mask[anchor]} ({aw:g}×{ah:g} px)\n"
                 f"max objectness {obj.max():.2f} at cell ({i}, {j})", fontsize="medium")
    ax.set(xlim=(0, w), ylim=(h, 0))
    ax.set_axis_off()


def _value_texts(view: ChannelView, names: Sequence[str]) -> list[str]:
    """What each of the five box channels and the class block hold at the peak cell."""
    a, j, i = view.peak()
    raw = view.raw[a, j, i]
    dec = view.decoded[a, j, i]
    aw, ah = view.anchors[a].tolist()
    s = view.stride
    sx, sy = torch.sigmoid(raw[:2]).tolist()
    top = torch.topk(dec[5:], min(3, len(dec) - 5))
    classes = ", ".join(
        f"{names[k] if k < len(names) else k} {p:.2f}"
        for p, k in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    )
    return [
        f"tx = {raw[0]:.2f}\nσ = {sx:.2f}\ncx = ({sx:.2f}+{i})·{s}\n= {dec[0]:.0f} px",
        f"ty = {raw[1]:.2f}\nσ = {sy:.2f}\ncy = ({sy:.2f}+{j})·{s}\n= {dec[1]:.0f} px",
        f"tw = {raw[2]:.2f}\nw = e^tw·{aw:g}\n= {dec[2]:.0f} px",
        f"th = {raw[3]:.2f}\nh = e^th·{ah:g}\n= {dec[3]:.0f} px",
        f"to = {raw[4]:.2f}\nobjectness\nσ = {dec[4]:.2f}",
        f"{len(dec) - 5} class logits → σ each\nbest: {classes}",
    ]


def _draw_layout(ax: Axes, view: ChannelView, names: Sequence[str]) -> None:
    """The layer's channels as a strip coloured by role, one block per anchor, and below it the
    most confident anchor's channels with their values at its cell."""
    num_anchors = len(view.mask)
    per_anchor = view.raw.shape[-1]
    total = num_anchors * per_anchor
    roles = np.tile(np.r_[_ROLE_OF_BOX_CHANNEL, np.full(per_anchor - 5, 3)], num_anchors)
    ax.imshow(roles[None], extent=(0, total, 0.62, 0.78), aspect="auto", interpolation="nearest",
              cmap=ListedColormap(ROLE_COLOURS), vmin=0, vmax=3)
    ax.vlines(np.arange(0, total + 1, per_anchor), 0.6, 0.8, colors="black", linewidths=1.2)
    for a in range(num_anchors):
        aw, ah = view.anchors[a].tolist()
        ax.text((a + 0.5) * per_anchor, 0.81,
                f"anchor {view.mask[a]} ({aw:g}×{ah:g}): channels {a * per_anchor}–"
                f"{(a + 1) * per_anchor - 1}", ha="center", va="bottom", fontsize="small")
    peak_anchor, j, i = view.peak()
    # The zoom: five equal cells for the box channels, the rest of the width for the classes.
    box_width = total * 0.12
    edges = [*(k * box_width for k in range(6)), total]
    titles = ["x: tx", "y: ty", "w: tw", "h: th", "obj: to", "classes"]
    colours = [ROLE_COLOURS[r] for r in _ROLE_OF_BOX_CHANNEL] + [ROLE_COLOURS[3]]
    cells = zip(pairwise(edges), titles, colours, _value_texts(view, names), strict=True)
    for (lo, hi), title, colour, text in cells:
        ax.add_patch(Rectangle((lo, 0.0), hi - lo, 0.42, facecolor=colour, alpha=0.35,
                               edgecolor="black", linewidth=0.8))
        ax.text((lo + hi) / 2, 0.40, title, ha="center", va="top", fontsize="small",
                fontweight="bold")
        ax.text((lo + hi) / 2, 0.30, text, ha="center", va="top", fontsize="x-small")
    start = peak_anchor * per_anchor
    ax.plot([start, 0], [0.62, 0.42], color="black", linewidth=0.8)
    ax.plot([start + per_anchor, total], [0.62, 0.42], color="black", linewidth=0.8)
    ax.set_title(
        f"YOLO layer {view.layer}: {total} channels = {num_anchors} anchors × (5 + "
        f"{per_anchor - 5} classes); below, anchor {view.mask[peak_anchor]} at cell "
        f"({i}, {j}), the layer's most confident prediction", fontsize="medium")
    ax.set(xlim=(0, total), ylim=(0, 1))
    ax.set_axis_off()


def draw_channels(view: ChannelView, names: Sequence[str], size: int = 500) -> Figure:
    """An ``A * size`` x ``size + size // 2`` pixel figure (``A`` anchors in the layer): one
    objectness heat map per anchor over the input (the most confident cell outlined, the box it
    predicts dashed), and below them the labelled channel layout of the layer."""
    num_anchors = len(view.mask)
    fig = new_figure(num_anchors * size, size + size // 2, size)
    grid = fig.add_gridspec(2, num_anchors, height_ratios=[2, 1])
    top = [fig.add_subplot(grid[0, a]) for a in range(num_anchors)]
    for a, ax in enumerate(top):
        _draw_objectness(ax, view, a)
    fig.colorbar(ScalarMappable(Normalize(0, 1), HEAT), ax=top, shrink=0.8,
                 label="objectness σ(to)")
    layout = fig.add_subplot(grid[1, :])
    _draw_layout(layout, view, names)
    layout.legend(handles=[Patch(color=c, label=n) for c, n in zip(ROLE_COLOURS, ROLE_NAMES,
                                                                   strict=True)],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize="small",
                  frameon=False)
    return fig
