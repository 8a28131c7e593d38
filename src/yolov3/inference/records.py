"""Detections as records: what ``detections.json`` holds and :meth:`yolov3.api.Results.to_json`
returns."""

from __future__ import annotations

from yolov3.inference.detector import Detections


def detection_records(name: str, dets: Detections, names: list[str],
                      **where: float) -> list[dict]:
    """The records of an image's (a frame's) detections: COCO-style ``bbox`` (x, y, width,
    height in image pixels) with the file ``name`` (and ``where`` in it: a video's ``frame``
    and ``time_s``), the 0-based class index as ``category_id``, its name and the score."""
    records = []
    for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                 dets.labels.tolist(), strict=True):
        x1, y1, x2, y2 = box
        records.append({
            "file_name": name, **where, "category_id": label, "category_name": names[label],
            "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
            "score": round(score, 5),
        })
    return records
