"""Bad labels found while reading a dataset: skipped and reported, or an error with strict."""

from __future__ import annotations

from collections.abc import Iterator

from yolov3.errors import DataError

# What a problem is about: ``yolov3 data check`` counts and explains them by kind.
UNREADABLE = "unreadable"  # an image that cannot be decoded (missing bytes, not an image)
CUT_SHORT = "cut-short"  # a JPEG file cut short: read as far as it goes, the rest grey
NO_LABEL = "no-label"  # an image without a label file or annotation entry
NO_IMAGE = "no-image"  # a label or annotation whose image file does not exist
MALFORMED = "malformed"  # a label line or file that cannot be parsed
CLASS = "class"  # a class index or name that is not one of the dataset's classes
BOX = "box"  # a box outside the image, inverted, or not numbers
ZERO_AREA = "zero-area"  # a box under one pixel wide or high (dropped, the image is kept)
DUPLICATE = "duplicate"  # two boxes of one class on the same object
EXIF = "exif"  # labels that fit only one orientation of an EXIF-rotated image
SIZE = "size"  # an annotation's image size that the image has in neither orientation
REPEATED_ID = "repeated-id"  # COCO annotation ids that are not unique (renumbered, kept)
REPEATED_IMAGE = "repeated-image"  # one image file listed under several COCO image ids


class Problems:
    """The problems of one dataset, each a message naming the file and the line or id, and its
    kind (one of the constants above).

    An image with a problem (a malformed label, a class out of range, a box outside the image, a
    missing file) is skipped as a whole, so that neither training nor the metric sees it with
    part of its objects missing. With ``strict`` the first problem raises :class:`DataError`.
    ``notes`` are fixes that keep the image (a zero-area box dropped); they never raise.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.messages: list[str] = []
        self.kinds: list[str] = []
        self.notes: list[tuple[str, str]] = []

    def add(self, message: str, kind: str = MALFORMED) -> None:
        """Record a problem (or raise it, with ``strict``)."""
        if self.strict:
            raise DataError(message)
        self.messages.append(message)
        self.kinds.append(kind)

    def note(self, message: str, kind: str = ZERO_AREA) -> None:
        """Record a fix that keeps the image, such as a dropped zero-area box."""
        self.notes.append((kind, message))

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[str]:
        return iter(self.messages)

    def summary(self, limit: int = 20) -> str:
        """A report for the end of a run: the count, then the first ``limit`` messages."""
        if not self.messages:
            return "no problems in the dataset"
        lines = [f"{len(self.messages)} problem(s) in the dataset (the images concerned were "
                 "skipped; --strict makes the first one an error):"]
        lines += [f"  {m}" for m in self.messages[:limit]]
        if len(self.messages) > limit:
            lines.append(f"  ... and {len(self.messages) - limit} more")
        return "\n".join(lines)
