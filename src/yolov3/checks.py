"""Checks of the values that both the command line and the Python API take, so that both refuse
the same values in the same words: ``--conf 1.5`` and ``DetectOptions(conf=1.5)`` alike.

``fraction_problem`` and ``at_least_problem`` say what is wrong with a value in words that
follow its name (argparse puts ``argument --conf:`` before them, :class:`DetectOptions` the
field's name), or None when nothing is; :func:`check_img_size` raises a :class:`YoloError`
naming the option or field it is given."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from yolov3.errors import YoloError
from yolov3.model.cfg import MAX_IMG_SIZE, STRIDE


def fraction_problem(value: object, meaning: str) -> str | None:
    """What is wrong with ``value`` as a number from 0 to 1 (a score or an IoU threshold,
    ``meaning`` says which), or None. NaN and the infinities are refused: a comparison with
    NaN is always false, which would keep every box or none without a word."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"must be a number in [0, 1], got {value!r}"
    if not 0.0 <= value <= 1.0:  # also False for NaN
        return f"must be in [0, 1] ({meaning}), got {float(value):g}"
    return None


def at_least_problem(value: object, minimum: int) -> str | None:
    """What is wrong with ``value`` as a whole number no smaller than ``minimum``, or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"must be a whole number, got {value!r}"
    if value < minimum:
        return f"must be at least {minimum}, got {value}"
    return None


def check_img_size(size: int | Sequence[int] | None, what: str = "--img-size",
                   square: str | None = None) -> int | tuple[int, int] | None:
    """``size`` as the network takes it: one side (a square input) or (height, width), each a
    multiple of its total stride from the stride to :data:`~yolov3.model.cfg.MAX_IMG_SIZE`;
    returned as an int or an (height, width) tuple. Anything else is a :class:`YoloError`
    naming ``what`` (the option or field) and saying what to use. None (not given: the
    weights' own) passes. ``square``, for a command that takes one side only, says why in the
    error that a (height, width) gets."""
    if size is None:
        return None
    if isinstance(size, Sequence) and not isinstance(size, str):
        if square and len(size) == 2:
            height, width = size
            raise YoloError(f"{what} {width}x{height}: {square}; give one side, e.g. "
                            f"{what} {max(size)}")
        if len(size) != 2:
            raise YoloError(f"{what} {size!r}: expected one side or (height, width)")
        height, width = (check_img_size(side, what) for side in size)
        return height, width
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise YoloError(f"{what} {size!r}: expected a whole number of pixels, a multiple of "
                        f"{STRIDE} from {STRIDE} to {MAX_IMG_SIZE}, or (height, width)")
    size = int(size)
    if size <= 0 or size % STRIDE:
        raise YoloError(f"{what} {size} is not a multiple of {STRIDE} greater than 0 (the "
                        f"network's total stride is {STRIDE}): use {STRIDE}, {2 * STRIDE}, ... "
                        f"up to {MAX_IMG_SIZE}")
    if size > MAX_IMG_SIZE:
        gigabytes = 32 * size * size * 4 / 1e9  # the first layer's 32 float32 channels
        raise YoloError(f"{what} {size} is above the largest accepted, {MAX_IMG_SIZE}: the "
                        "network's memory grows with the square of the input side (at "
                        f"{size}x{size} the first layer's output alone is {gigabytes:,.0f} GB; "
                        "the models are trained at 320 to 608); use a multiple of 32 from 32 to "
                        f"{MAX_IMG_SIZE}")
    return size
