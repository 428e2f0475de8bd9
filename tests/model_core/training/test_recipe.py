"""The recipe: several manifests as one, radiometric jitter, warm-up then poly decay, and the from-scratch switch."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scl_deeplab.model_core.cli import main as cli
from scl_deeplab.model_core.errors import ManifestError
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.progress import SILENT
from scl_deeplab.model_core.training import recipe
from scl_deeplab.model_core.training.dataset import PatchDataset, load_manifest, load_manifests, radiometric_jitter
from scl_deeplab.model_core.training.loop import learning_rate_factor
from scl_deeplab.model_core.training.train import TrainConfig, train
from scl_deeplab.tests.model_core.training.test_train import FAST, stand_in, write_manifest
from scl_deeplab.tests.models import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and immune to the other core being busy."""
    with one_torch_thread():
        yield


def edit_manifest(path: Path, **changes: object) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_merged_manifests_train_as_one(tmp_path):
    first = write_manifest(tmp_path / "a", n_train=6, n_val=2)
    second = write_manifest(tmp_path / "b", n_train=4, n_val=2)
    merged = load_manifests([first, second.parent])
    assert (len(merged.train), len(merged.val)) == (10, 4)
    assert merged.sources == (first, second) and merged.path == first
    assert {r.image.parent.parent.name for r in merged.train} == {"a", "b"}

    result = train([first, second], replace(FAST, epochs=2), tmp_path / "m.pt", build=stand_in())
    assert [row["epoch"] for row in result.history] == [1, 2]
    meta = checkpoint.load_checkpoint(result.best_path)["meta"]
    assert meta["stages"][0]["manifests"] == [str(first), str(second)]
    assert 0.0 <= result.pixel_accuracy <= 1.0
    assert load_manifests([first]) == load_manifest(first)


@pytest.mark.parametrize("change, message", [
    ({"bands": [3, 2, 1]}, r"different band orders \(1,2,3 and 3,2,1\)"),
    ({"dtype": "uint16", "input_scale": 2500.0}, "different data types"),
    ({"input_scale": 1000.0}, r"different input scalings \(255.0 and 1000.0\)"),
])
def test_manifests_that_disagree_are_refused_before_training(tmp_path, change, message):
    first = write_manifest(tmp_path / "a", n_train=4, n_val=2)
    second = edit_manifest(write_manifest(tmp_path / "b", n_train=4, n_val=2), **change)
    with pytest.raises(ManifestError, match=message):
        train([first, second], FAST, tmp_path / "m.pt", build=stand_in())
    assert not (tmp_path / "m.pt").exists() and not checkpoint.last_path(tmp_path / "m.pt").exists()


def test_the_same_manifest_twice_and_none_are_refused(tmp_path):
    first = write_manifest(tmp_path / "a", n_train=4, n_val=2)
    with pytest.raises(ManifestError, match="given more than once"):
        load_manifests([first, first.parent])
    with pytest.raises(ManifestError, match="No patches manifest given"):
        load_manifests([])


def test_cli_takes_patches_repeated(tmp_path, capsys, monkeypatch):
    first = write_manifest(tmp_path / "a", n_train=4, n_val=2)
    second = write_manifest(tmp_path / "b", n_train=4, n_val=2)
    seen = {}

    def fake_train(patches, config, output, **kwargs):
        seen["patches"] = patches
        raise ManifestError("stop here")

    monkeypatch.setattr("scl_deeplab.model_core.training.train.train", fake_train)
    code = cli.main(["train", "--patches", str(first), "--patches", str(second.parent), "--output",
                     str(tmp_path / "m.pt")])
    assert code == 1 and seen["patches"] == [first, second.parent]


def test_radiometric_jitter_stays_in_range_and_is_seeded():
    rng = np.random.default_rng(0)
    unit = rng.uniform(0, 1, (3, 16, 16)).astype(np.float32)
    outs = [radiometric_jitter(unit, np.random.default_rng(s)) for s in range(20)]
    assert all(o.dtype == np.float32 and o.shape == unit.shape and o.min() >= 0 and o.max() <= 1 for o in outs)
    np.testing.assert_array_equal(outs[3], radiometric_jitter(unit, np.random.default_rng(3)))
    shifts = [float(np.abs(o - unit).mean()) for o in outs]
    assert max(shifts) > 0.01 and max(shifts) < 0.15  # visible, yet the colours stay the same kind


def test_training_patches_are_jittered_validation_patches_are_not(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path / "a", n_train=2, n_val=1))
    common = dict(scale=255.0, mean=(0, 0, 0), std=(1, 1, 1))
    plain = PatchDataset(manifest.train, **common)[(0, 0)]
    jittered = PatchDataset(manifest.train, radiometric=True, **common)
    image, target = jittered[(0, 0)]
    assert torch.equal(target, plain[1])  # colour changes, classes do not
    assert not torch.equal(image, plain[0])
    assert torch.equal(image, jittered[(0, 0)][0])


def test_warm_up_then_poly_decay():
    total, warmup = 100, 10
    factors = [learning_rate_factor(s, total, warmup) for s in range(total)]
    assert factors[0] == pytest.approx(1 / 11)
    assert all(a < b for a, b in zip(factors[:warmup], factors[1 : warmup + 1]))
    assert max(factors) == pytest.approx(factors[warmup]) and factors[warmup] == pytest.approx(0.9**0.9)
    assert all(a > b for a, b in zip(factors[warmup:], factors[warmup + 1 :]))
    assert factors[-1] == pytest.approx((1 / 100) ** 0.9)
    assert learning_rate_factor(0, 100, 0) == 1.0


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    warn = info

    def set_progress(self, percent: float) -> None:
        pass

    def is_canceled(self) -> bool:
        return False


def test_auto_without_weights_trains_the_full_network_and_says_so():
    head = TrainConfig(stage="head", pretrained="auto")
    log = Lines()
    assert recipe.for_start(head, "none", resuming=False, progress=log).stage == "full"
    assert "from-scratch recipe" in log.lines[0] and '"head" stage' in log.lines[0]
    assert recipe.for_start(replace(head, stage="layer4"), "none", resuming=False, progress=SILENT).stage == "full"


@pytest.mark.parametrize("config, kind, resuming", [
    (TrainConfig(stage="head", pretrained="auto"), "coco", False),  # pretrained: the seed's recipe
    (TrainConfig(stage="head", pretrained="auto"), "imagenet", False),
    (TrainConfig(stage="head", pretrained="none"), "none", False),  # asked for explicitly
    (TrainConfig(stage="layer4", pretrained="auto"), "none", True),  # continuing a checkpoint
])
def test_other_starts_keep_their_stage(config, kind, resuming):
    assert recipe.for_start(config, kind, resuming=resuming, progress=SILENT) == config


def test_a_new_auto_run_without_weights_records_the_full_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    patches = write_manifest(tmp_path / "a", n_train=4, n_val=2)
    config = replace(FAST, stage="head", pretrained="auto", epochs=1)
    result = train(patches, config, tmp_path / "m.pt", build=stand_in())
    meta = result.meta
    assert meta["stages"][0]["stage"] == "full" and meta["config"]["stage"] == "full"
    assert meta["weights_source"]["kind"] == "none"


def test_auto_without_weights_trains_on_crops_unless_asked_otherwise():
    head = TrainConfig(stage="head", pretrained="auto")
    log = Lines()
    assert recipe.for_start(head, "none", resuming=False, progress=log).crop_px == recipe.SCRATCH_CROP_PX
    assert f"random {recipe.SCRATCH_CROP_PX} px crops" in log.lines[0]
    assert recipe.for_start(replace(head, crop_px=64), "none", resuming=False, progress=SILENT).crop_px == 64
    assert recipe.for_start(head, "coco", resuming=False, progress=SILENT).crop_px == 0  # pretrained: whole patches


def test_training_crops_hold_labels_and_validation_crops_tile_the_patch(tmp_path):
    codes = np.zeros((32, 32), np.uint8)
    codes[24:, 24:] = 4  # labelled only in one corner: most random 16 px crops would hold no label at all
    manifest = load_manifest(write_manifest(tmp_path / "a", n_train=2, n_val=1, codes_override={0: codes}))
    common = dict(scale=255.0, mean=(0, 0, 0), std=(1, 1, 1), patch_size=32)
    training = PatchDataset(manifest.train, augment=True, crop=16, **common)
    assert len(training) == 2 * 4
    for seed in range(12):
        image, target = training[(seed % 4, seed)]  # items 0-3 are crops of the corner-labelled patch
        assert image.shape == (3, 16, 16) and (target != 255).any()
    whole_image, whole_target = PatchDataset(manifest.val, **common)[0]
    grid = PatchDataset(manifest.val, crop=16, **common)
    assert len(grid) == 4
    crops = [grid[k] for k in range(4)]
    image = torch.cat([torch.cat([crops[0][0], crops[1][0]], 2), torch.cat([crops[2][0], crops[3][0]], 2)], 1)
    target = torch.cat([torch.cat([crops[0][1], crops[1][1]], 1), torch.cat([crops[2][1], crops[3][1]], 1)], 0)
    assert torch.equal(image, whole_image) and torch.equal(target, whole_target)
    assert len(PatchDataset(manifest.train, crop=32, **common)) == 2  # a crop no smaller than the patch: whole
    uneven = PatchDataset(manifest.val, crop=20, **common)  # 32 px does not split into 20s: 2 x 2 overlapping crops
    assert len(uneven) == 4 and [uneven[k][1].shape for k in range(4)] == [(20, 20)] * 4
    assert torch.equal(uneven[3][1], whole_target[12:, 12:])  # the last one ends at the patch's edge


def test_a_model_trained_on_crops_records_their_size_and_goes_on_with_them(tmp_path):
    patches = write_manifest(tmp_path / "a", n_train=4, n_val=2)  # 32 px patches
    log = Lines()
    first = train(patches, replace(FAST, epochs=1, crop_px=16), tmp_path / "m.pt", progress=log)
    assert any("random 16 px crops of the 32 px patches, 4 a patch" in line for line in log.lines)
    assert first.meta["patch_size"] == 16 and list(first.meta["aspp_rates"]) == [1, 2, 3]
    assert len(first.history) == 1
    more = train(patches, replace(FAST, epochs=2), tmp_path / "more.pt", resume=first.last_path)
    assert more.meta["patch_size"] == 16 and more.meta["stages"][-1]["crop_px"] == 16
    whole = train(patches, replace(FAST, epochs=1), tmp_path / "whole.pt", build=stand_in())
    assert whole.meta["patch_size"] == 32 and whole.meta["stages"][-1]["crop_px"] == 0
