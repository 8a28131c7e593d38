"""From darknet's inference output to detections: scores, thresholds and per-class NMS."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert


def postprocess(
    output: Tensor,
    conf_thresh: float = 0.25,
    iou_thresh: float = 0.45,
    multi_label: bool = True,
    max_det: int = 300,
) -> list[Tensor]:
    """Detections per image from (B, N, 5+C) rows of cx, cy, w, h, objectness, class probs.

    Score = objectness x class probability (darknet). With ``multi_label`` every (box, class)
    pair above ``conf_thresh`` is a detection, as darknet's COCO protocol does; otherwise each
    box keeps only its best class. NMS runs per image and class at ``iou_thresh``, for the whole
    batch in one torchvision call. Returns, per image, an (n, 6) tensor of x1, y1, x2, y2 (input
    pixels), score, class index, best first, at most ``max_det`` rows.
    """
    num_images, _, width = output.shape
    num_classes = width - 5
    scores = output[..., 4:5] * output[..., 5:]
    if multi_label:
        img, box, cls = (scores > conf_thresh).nonzero(as_tuple=True)
        score = scores[img, box, cls]
    else:
        best, best_cls = scores.max(dim=2)
        img, box = (best > conf_thresh).nonzero(as_tuple=True)
        score, cls = best[img, box], best_cls[img, box]
    xyxy = box_convert(output[img, box, :4], "cxcywh", "xyxy").float()
    keep = batched_nms(xyxy, score.float(), img * num_classes + cls, iou_thresh)
    dets = torch.cat([xyxy[keep], score[keep, None].float(), cls[keep, None].float()], dim=1)
    img = img[keep]
    order = torch.argsort(img, stable=True)  # group by image, keeping score order within
    counts = torch.bincount(img, minlength=num_images).tolist()
    return [d[:max_det] for d in dets[order].split(counts)]
