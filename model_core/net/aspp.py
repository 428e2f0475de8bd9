"""Where DeepLabv3's ASPP looks, and its atrous rates scaled to small patches.

torchvision's DeepLabv3-ResNet50 runs ASPP at output stride 8 with atrous rates
12, 24 and 36: its dilated 3x3 taps sample the feature map 96, 192 and 288 px
away from each position (``reach_px``). A patch no larger than that reach (a
32 px patch is a 4 x 4 feature map) puts the outer taps on zero padding only, so
their weights never learn from the image; a larger tile at prediction then feeds
them content the model never saw, and its classes can collapse to one.

Scaling the rates to the patch size keeps every tap inside the patches the model
learns from. DeepLabv3 chose 12, 24, 36 for 513 px crops, the outermost tap
reaching about half the crop; ``scaled_rates`` keeps that proportion for smaller
patches. The rates are recorded in the checkpoint (``meta["aspp_rates"]``) and
used again wherever the model runs.

Torch-free: making patches and choosing tiles read it without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import CheckpointError, InputError

OUTPUT_STRIDE = 8  # DeepLabv3-ResNet50 as built here: ASPP runs on 1/8 of the input
STANDARD_RATES: tuple[int, ...] = (12, 24, 36)  # torchvision's, at output stride 8
# DeepLabv3's rates fit crops whose half is about the outermost tap's reach: 2 x 288 px.
DESIGN_CROP_PX = 2 * STANDARD_RATES[-1] * OUTPUT_STRIDE
CHOICES: tuple[str, ...] = ("auto", "scaled", "standard")


def reach_px(rates: Sequence[int] = STANDARD_RATES) -> int:
    """How far (px of the input) ASPP's outermost tap looks from each position."""
    return max(rates) * OUTPUT_STRIDE


def below_reach(patch_size_px: int, rates: Sequence[int] = STANDARD_RATES) -> bool:
    """Whether ASPP's outermost tap lies outside a patch of this size from every position in it.

    A tap of rate r lands inside a feature map of f positions only where r < f.
    """
    return max(rates) * OUTPUT_STRIDE >= patch_size_px


def blind_taps_px(patch_size_px: int, rates: Sequence[int] = STANDARD_RATES) -> list[int]:
    """The distances (px) of the taps that see only padding from every position of a patch of this size."""
    return [r * OUTPUT_STRIDE for r in rates if r * OUTPUT_STRIDE >= patch_size_px]


def scaled_rates(patch_size_px: int) -> tuple[int, ...]:
    """The standard rates scaled to ``patch_size_px`` (never up), as distinct rising integers from 1.

    32 px -> (1, 2, 3), 64 -> (1, 3, 4), 128 -> (3, 5, 8), 256 -> (5, 11, 16).
    """
    factor = min(1.0, patch_size_px / DESIGN_CROP_PX)
    rates: list[int] = []
    for rate in STANDARD_RATES:
        rates.append(max(round(rate * factor), rates[-1] + 1 if rates else 1))
    return tuple(rates)


def rates_for(choice: str, patch_size_px: int, recorded: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The rates a model trains with: "standard", "scaled" to the patch, or "auto".

    "auto" keeps ``recorded`` (the rates of a checkpoint training continues from),
    else scales the rates for patches below the reach.
    """
    if choice not in CHOICES:
        raise InputError(f'Unknown ASPP rates "{choice}"; use one of {", ".join(CHOICES)}.')
    if choice == "auto" and recorded is not None:
        return recorded
    if choice == "scaled" or (choice == "auto" and below_reach(patch_size_px)):
        return scaled_rates(patch_size_px)
    return STANDARD_RATES


def describe(rates: Sequence[int]) -> str:
    """E.g. "rates 1, 2, 3 (taps 8, 16, 24 px away)"."""
    taps = ", ".join(str(r * OUTPUT_STRIDE) for r in rates)
    return f"rates {', '.join(str(r) for r in rates)} (taps {taps} px away)"


def small_patch_note(patch_size_px: int, rates: Sequence[int] | None = None) -> str | None:
    """What to tell a user about patches below ASPP's standard reach; ``None`` for larger ones.

    ``rates`` are the ones the model gets; ``None`` (making patches) says what training will do.
    """
    if not below_reach(patch_size_px):
        return None
    why = (
        f"Patches of {patch_size_px} px are smaller than the reach of DeepLabv3's ASPP at its standard rates "
        f"({reach_px()} px): its outer dilated taps would see only padding."
    )
    if rates is None:
        return (
            f"{why} Training scales ASPP's rates to the patch size (ASPP_RATES auto: "
            f"{describe(scaled_rates(patch_size_px))}), and predict uses tiles of {patch_size_px} px by default."
        )
    if tuple(rates) == STANDARD_RATES:
        return (
            f"{why} This model keeps the standard {describe(rates)}: predict it with tiles of {patch_size_px} px "
            "(TILE_SIZE 0 does), or train with ASPP_RATES auto or scaled to let every tap learn."
        )
    return f"{why} ASPP {describe(rates)}, scaled to the patch size; recorded in the checkpoint."


def read_rates(meta: dict[str, Any]) -> tuple[int, ...]:
    """The ASPP rates a checkpoint's model was trained with; the standard ones when it records none."""
    rates = meta.get("aspp_rates") if isinstance(meta, dict) else None
    if rates is None:
        return STANDARD_RATES
    if (
        not isinstance(rates, (list, tuple))
        or len(rates) != len(STANDARD_RATES)
        or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates)
    ):
        raise CheckpointError(
            f"The checkpoint's ASPP rates {rates!r} are not {len(STANDARD_RATES)} positive whole numbers. "
            "Retrain it, or use another file."
        )
    return tuple(rates)

