"""Bad labels found while reading a dataset: skipped and reported, or an error with strict."""

from __future__ import annotations

from collections.abc import Iterator

from yolov3.errors import DataError


class Problems:
    """The problems of one dataset, each a message naming the file and the line or id.

    An image with a problem (a malformed label, a class out of range, a box outside the image, a
    missing file) is skipped as a whole, so that neither training nor the metric sees it with
    part of its objects missing. With ``strict`` the first problem raises :class:`DataError`.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        """Record a problem (or raise it, with ``strict``)."""
        if self.strict:
            raise DataError(message)
        self.messages.append(message)

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
