"""The project's own error type: bad input becomes one clear message, never a traceback."""

from __future__ import annotations

from collections.abc import Iterable


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


def raise_problems(problems: Iterable[str]) -> None:
    """Raise one :class:`ConfigError` that lists ``problems`` (a config section's checks, each
    naming its key), if there are any."""
    found = list(problems)
    if found:
        raise ConfigError("; ".join(found))


def choice_problem(name: str, value: object, known: Iterable[str]) -> list[str]:
    """A problem when ``value`` of setting ``name`` is not one of ``known``."""
    known = tuple(known)
    return [] if value in known else [f"{name} must be one of {', '.join(known)}, got '{value}'"]
