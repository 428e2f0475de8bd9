"""ASPP's reach and its rates scaled to small patches: pure arithmetic, no torch."""

from __future__ import annotations

import pytest
from scl_deeplab.model_core.errors import CheckpointError, InputError
from scl_deeplab.model_core.net import aspp


def test_standard_rates_reach_288_px_and_patches_up_to_it_are_below():
    assert aspp.reach_px() == 288
    assert [aspp.below_reach(p) for p in (32, 256, 288, 296, 512)] == [True, True, True, False, False]


@pytest.mark.parametrize("patch,rates", [(32, (1, 2, 3)), (64, (1, 3, 4)), (128, (3, 5, 8)), (256, (5, 11, 16)),
                                         (576, (12, 24, 36)), (2048, (12, 24, 36))])
def test_scaled_rates_are_distinct_rising_and_never_above_the_standard(patch, rates):
    assert aspp.scaled_rates(patch) == rates


@pytest.mark.parametrize("patch", [32, 64, 128, 256, 288])
def test_scaled_taps_land_inside_the_patch_they_learn_from(patch):
    rates = aspp.scaled_rates(patch)
    assert not aspp.below_reach(patch, rates)  # the outermost tap sees image from some positions
    assert max(rates) * aspp.OUTPUT_STRIDE <= patch // 2 + aspp.OUTPUT_STRIDE  # and reaches about half the patch


def test_blind_taps_are_those_at_least_a_patch_away():
    assert aspp.blind_taps_px(32) == [96, 192, 288]
    assert aspp.blind_taps_px(256) == [288]
    assert aspp.blind_taps_px(296) == [] and aspp.blind_taps_px(32, (1, 2, 3)) == []


def test_auto_scales_below_the_reach_only_and_keeps_a_resumed_checkpoints_rates():
    assert aspp.rates_for("auto", 32) == (1, 2, 3)
    assert aspp.rates_for("auto", 512) == aspp.STANDARD_RATES
    assert aspp.rates_for("standard", 32) == aspp.STANDARD_RATES
    assert aspp.rates_for("scaled", 512) == (11, 21, 32)
    assert aspp.rates_for("auto", 32, recorded=aspp.STANDARD_RATES) == aspp.STANDARD_RATES
    assert aspp.rates_for("scaled", 32, recorded=aspp.STANDARD_RATES) == (1, 2, 3)
    with pytest.raises(InputError, match='Unknown ASPP rates "wide"'):
        aspp.rates_for("wide", 32)


def test_checkpoint_rates_default_to_the_standard_and_bad_ones_are_refused():
    assert aspp.read_rates({"patch_size": 32}) == aspp.STANDARD_RATES
    assert aspp.read_rates({"aspp_rates": [1, 2, 3]}) == (1, 2, 3)
    for bad in ([1, 2], [0, 1, 2], ["1", 2, 3], [1.5, 2, 3], "1,2,3"):
        with pytest.raises(CheckpointError, match="ASPP rates"):
            aspp.read_rates({"aspp_rates": bad})


def test_small_patch_notes_say_why_and_what_happens():
    assert aspp.small_patch_note(512) is None
    making = aspp.small_patch_note(32)
    assert "Patches of 32 px" in making and "288 px" in making and "rates 1, 2, 3" in making
    assert "tiles of 32 px" in making
    standard = aspp.small_patch_note(32, aspp.STANDARD_RATES)
    assert "tiles of 32 px" in standard and "ASPP_RATES auto or scaled" in standard
    assert "scaled to the patch size" in aspp.small_patch_note(32, (1, 2, 3))
