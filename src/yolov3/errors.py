"""The project's own error type: bad input becomes one clear message, never a traceback."""

from __future__ import annotations


class YoloError(Exception):
    """A problem with the user's input (a file, a value, a path) that the message explains.

    The command line prints the message alone and exits with status 1 (``--debug`` shows the
    traceback). Library users can catch this one type for every input problem.
    """


class ConfigError(YoloError):
    """A darknet ``.cfg`` or a training config that cannot be used."""


class WeightsError(YoloError):
    """A darknet ``.weights`` file or a checkpoint that does not fit the model."""


class DataError(YoloError):
    """An image, label file or dataset description that cannot be read."""
