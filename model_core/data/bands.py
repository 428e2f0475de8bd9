"""Which bands a model sees: their names, whether they are true colour, and matching them.

A band's name comes from its description in the raster (``preparel2a`` and
``downloadl2a`` write Sentinel-2 names such as B04 or B8A); a band without a known
description is ``band <n>`` after its place in BANDS. Three bands without names are
true colour (red, green, blue), as before multispectral input: such models keep the
historic names, scale and normalisation. Red, green and blue match B04, B03 and B02.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import rasterio

from ..errors import BandCountError, InputError

RGB = ("red", "green", "blue")
SENTINEL2_RGB = ("B04", "B03", "B02")
# The bands of an L2A product, in the product's order (B10 is L1C only).
SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
_SENTINEL2_NAME = re.compile(r"^B(?:0?([1-9])|1([0-2])|(8A))$", re.IGNORECASE)
_SAME = dict(zip(RGB, SENTINEL2_RGB))
_UNNAMED = re.compile(r"^band \d+$")


def parse_bands(text: str) -> tuple[int, ...]:
    """``"4,3,2,9"`` -> (4, 3, 2, 9): the scene's band numbers (1-based) the model reads, in order."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        bands = tuple(int(p) for p in parts)
    except ValueError:
        bands = ()
    if not bands or min(bands) < 1 or len(set(bands)) < len(bands):
        raise InputError(
            f"Bands {text!r} are not band numbers; give the scene's bands counted from 1, each once, e.g. '1,2,3' "
            "(red, green, blue) or '3,2,1,4,5,6' (red, green, blue first, then further bands)."
        )
    return bands


def parse_optional_bands(text: str | None) -> tuple[int, ...] | None:
    """``parse_bands``, or None for an empty text (the bands are then chosen by name or taken first)."""
    return parse_bands(text) if str(text or "").strip() else None


def sentinel2_name(text: str | None) -> str | None:
    """``"b8a"`` -> "B8A", ``"B4"`` -> "B04"; None for anything that is not a Sentinel-2 band name."""
    match = _SENTINEL2_NAME.match((text or "").strip())
    if not match:
        return None
    one, teen, eight_a = match.groups()
    return "B8A" if eight_a else f"B{int(one or 0) + (10 + int(teen) if teen else 0):02d}"


def band_names(src: rasterio.io.DatasetReader, bands: Sequence[int]) -> tuple[str, ...]:
    """The names of ``bands`` of ``src``: Sentinel-2 names from the descriptions, else red/green/blue or ``band n``."""
    found = [sentinel2_name(src.descriptions[b - 1]) for b in bands]
    if all(found):
        return tuple(found)  # type: ignore[arg-type]
    if len(bands) == 3 and not any(found):
        return RGB
    return tuple(name or f"band {i + 1}" for i, name in enumerate(found))


def canonical(name: str) -> str:
    """Red, green and blue as B04, B03, B02; other names as they are."""
    return _SAME.get(name, name)


def is_true_colour(names: Sequence[str]) -> bool:
    """Three bands that are red, green and blue (by name or unnamed), in that order."""
    return len(names) == 3 and all(canonical(n) == b or _UNNAMED.match(n) for n, b in zip(names, SENTINEL2_RGB))


def rgb_positions(names: Sequence[str]) -> tuple[int, int, int] | None:
    """Where red, green and blue sit among ``names`` (0-based); None when one of them is not named."""
    if is_true_colour(names):
        return (0, 1, 2)
    found = [canonical(n) for n in names]
    if all(b in found for b in SENTINEL2_RGB):
        return tuple(found.index(b) for b in SENTINEL2_RGB)  # type: ignore[return-value]
    return None


def display_positions(names: Sequence[str]) -> tuple[int, int, int]:
    """Three bands to draw: red, green, blue where named, else the first three (a false-colour composite)."""
    positions = rgb_positions(names)
    if positions is not None:
        return positions
    n = len(names)
    return (0, min(1, n - 1), min(2, n - 1))


def check_same(expected: Sequence[str], found: Sequence[str], what: str, fix: str) -> None:
    """Refuse ``found`` bands that are not ``expected`` (count, names or order), listing both.

    Unnamed bands (``band n``) match any name; red, green and blue match B04, B03 and B02.
    """
    if len(found) != len(expected):
        raise BandCountError(
            f"{what} has {len(found)} band(s) ({', '.join(found)}), but {len(expected)} are expected "
            f"({', '.join(expected)}). {fix}"
        )
    differ = [
        i for i, (e, f) in enumerate(zip(expected, found))
        if canonical(e) != canonical(f) and not _UNNAMED.match(e) and not _UNNAMED.match(f)
    ]
    if not differ:
        return
    reordered = sorted(map(canonical, expected)) == sorted(map(canonical, found))
    raise BandCountError(
        f"{what} has the bands {', '.join(found)}, but {', '.join(expected)} are expected"
        + (" (the same bands in another order)" if reordered else "")
        + f". {fix}"
    )


def by_name(src: rasterio.io.DatasetReader, names: Sequence[str]) -> tuple[int, ...] | None:
    """The band numbers of ``src`` whose descriptions are ``names`` (in that order); None when one is missing."""
    own = {sentinel2_name(d): i + 1 for i, d in enumerate(src.descriptions) if sentinel2_name(d)}
    wanted = [canonical(n) for n in names]
    if not all(w in own for w in wanted):
        return None
    return tuple(own[w] for w in wanted)
