"""Patch and tile sizes: the multiple-of-8 rule and where windows of one size go along an axis.

Patches (``data/windows.py``) and prediction tiles (``prediction/tiling.py``) both
follow these rules, so a size that trains is a size that predicts.
"""

from __future__ import annotations

from typing import Literal

from .errors import InputError

# DeepLabv3-ResNet50 downsamples by 8: sizes that divide evenly keep the grid aligned and lose no border pixels.
SIZE_MULTIPLE = 8

ShortAxis = Literal["one", "refuse"]


def size_suggestions(size_px: int) -> tuple[int, int]:
    """The two multiples of 8 to suggest instead of ``size_px``: the one below (at least 8) and the next."""
    lower = max(SIZE_MULTIPLE, size_px // SIZE_MULTIPLE * SIZE_MULTIPLE)
    return lower, lower + SIZE_MULTIPLE


def is_valid_size(size_px: int) -> bool:
    """Whether ``size_px`` is a positive multiple of 8."""
    return size_px >= SIZE_MULTIPLE and size_px % SIZE_MULTIPLE == 0


def check_size(size_px: int, what: str, *, note: str = "") -> None:
    """Raise ``InputError`` unless ``size_px`` is a positive multiple of 8.

    ``what`` names the size in the message ("patch size", "tile size"); ``note`` ends it.
    """
    if not is_valid_size(size_px):
        lower, upper = size_suggestions(size_px)
        raise InputError(
            f"The {what} {size_px} px is not a positive multiple of {SIZE_MULTIPLE}; use e.g. {lower} or {upper}{note}."
        )


def largest_size(length_px: int) -> int:
    """The largest multiple of 8 that fits in ``length_px``."""
    return length_px // SIZE_MULTIPLE * SIZE_MULTIPLE


def axis_offsets(length_px: int, size_px: int, step_px: int, *, short_axis: ShortAxis = "refuse") -> list[int]:
    """Window offsets along an axis of ``length_px``: every ``step_px``, the last one moved inward to end at the edge.

    An axis no longer than one window gets the single offset 0. One shorter than the
    window raises ``InputError`` with ``short_axis="refuse"`` (patches keep their size);
    with ``"one"`` it also gets offset 0, and the caller shrinks that window to the axis
    (tiles, see ``tiling.tile_extent``).
    """
    if length_px <= 0:
        raise InputError(f"Cannot place windows on an axis of {length_px} px.")
    if step_px <= 0:
        raise InputError(f"The stride must be a positive number of pixels, not {step_px}.")
    if size_px > length_px:
        if short_axis == "refuse":
            raise InputError(f"A window of {size_px} px does not fit in {length_px} px.")
        return [0]
    offsets = list(range(0, length_px - size_px, step_px))
    offsets.append(length_px - size_px)  # the last window ends at the edge: no padding
    return offsets
