"""The training loop: learning, history and resume, bad manifests, NaN, cancel, out of memory, the CLI.

Loop logic runs on a small stand-in with DeepLab's {"out": ...} contract over
hand-written 32 px patches whose classes have distinct colours; the CLI test
trains the real DeepLabv3 on real Make patches output.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.cli import main as cli
from scl_deeplab.model_core.errors import Canceled, DeviceError, InputError, ManifestError, MaskCodeError, TrainingError
from scl_deeplab.model_core.evaluation import metrics
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.training import curves
from scl_deeplab.model_core.training.dataset import PatchDataset, class_weights, load_manifest, loaders
from scl_deeplab.model_core.training.train import TrainConfig, train
from scl_deeplab.tests.models import one_torch_thread
from scl_deeplab.tests.recording import RecordingProgress
from torch import nn

SIZE = 32
COLOURS = {4: (40, 120, 40), 5: (200, 170, 110), 6: (20, 40, 110), 9: (235, 235, 235)}  # vegetation, soil, water, cloud


def write_patch(folder: Path, name: str, codes: np.ndarray, seed: int) -> tuple[str, str]:
    """A 3-band uint8 image coloured by class (plus noise) and its SCL mask; returns relative paths."""
    rng = np.random.default_rng(seed)
    lut = np.zeros((256, 3), np.float32)
    for code, rgb in COLOURS.items():
        lut[code] = rgb
    rgb = np.moveaxis(lut[codes], -1, 0) + rng.normal(0, 10, (3, *codes.shape))
    h, w = codes.shape
    profile = dict(driver="GTiff", width=w, height=h, crs="EPSG:32633", transform=from_origin(400000, 5000000, 10, 10))
    (folder / "images").mkdir(exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    with rasterio.open(folder / "images" / f"{name}.tif", "w", count=3, dtype="uint8", **profile) as dst:
        dst.write(np.clip(rgb, 0, 255).astype(np.uint8))
    with rasterio.open(folder / "masks" / f"{name}.tif", "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(codes.astype(np.uint8), 1)
    return f"images/{name}.tif", f"masks/{name}.tif"


def layout(seed: int, size: int = SIZE) -> np.ndarray:
    """Four blocks of random classes, and a no-data (code 0) strip along the top."""
    rng = np.random.default_rng(seed)
    codes = np.zeros((size, size), np.uint8)
    half = size // 2
    for r in (0, half):
        for c in (0, half):
            codes[r : r + half, c : c + half] = rng.choice(list(COLOURS))
    codes[:2] = 0
    return codes


def write_manifest(folder: Path, *, n_train: int = 8, n_val: int = 4, sizes: dict[int, int] | None = None,
                   codes_override: dict[int, np.ndarray] | None = None) -> Path:
    """A manifest in Make patches' format over hand-written patches."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n_train + n_val):
        size = (sizes or {}).get(i, SIZE)
        codes = (codes_override or {}).get(i, layout(i, size))
        image, mask = write_patch(folder, f"p{i:03d}", codes, seed=100 + i)
        records.append({
            "id": f"p{i:03d}", "image": image, "mask": mask, "split": "train" if i < n_train else "val",
            "window": {"col_off": i * SIZE, "row_off": 0, "width": SIZE, "height": SIZE},
            "histogram": {str(k): int(v) for k, v in enumerate(np.bincount(codes.ravel())) if v},
        })
    manifest = {"format": "scl-deeplab-patches", "version": 1, "patch_size": SIZE, "stride": SIZE,
                "bands": [1, 2, 3], "dtype": "uint8", "input_scale": 255.0, "patches": records}
    path = folder / "index.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("patches"), n_train=16, n_val=4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and immune to the other core being busy."""
    with one_torch_thread():
        yield


class StandIn(nn.Module):
    """Per-pixel network named like DeepLab (backbone.layer4, classifier) with its {"out": ...} contract."""

    def __init__(self, aux: bool = False, nan_after: int | None = None, fail: Exception | None = None) -> None:
        super().__init__()
        self.backbone = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 16, 1), bn1=nn.BatchNorm2d(16), relu=nn.ReLU(), layer4=nn.Conv2d(16, 16, 1)))
        self.classifier = nn.Sequential(nn.ReLU(), nn.Conv2d(16, scl.NUM_CLASSES, 1))
        self.aux_classifier = nn.Conv2d(16, scl.NUM_CLASSES, 1) if aux else None
        self.nan_after, self.fail, self.calls = nan_after, fail, 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            self.calls += 1
            if self.fail is not None:
                raise self.fail
        features = self.backbone(x)
        out = self.classifier(features)
        if self.training and self.nan_after is not None and self.calls > self.nan_after:
            out = out * float("nan")
        result = {"out": out}
        if self.aux_classifier is not None:
            result["aux"] = self.aux_classifier(features)
        return result


def stand_in(**kwargs):
    return lambda aux=False: StandIn(aux=aux, **kwargs)


FAST = TrainConfig(stage="full", epochs=4, batch_size=2, learning_rate=0.05, pretrained="none", device="cpu",
                   precision="float32", seed=0)


def constant_prediction_miou(manifest_path: Path) -> float:
    """mIoU of predicting the validation set's most frequent class everywhere."""
    manifest = load_manifest(manifest_path)
    refs = [rasterio.open(r.mask).read(1) for r in manifest.val]
    ref = np.concatenate([r.ravel() for r in refs])
    majority = np.bincount(ref[ref > 0]).argmax()
    return metrics.scores(metrics.confusion_from_codes(ref, np.full_like(ref, majority))).mean_iou


def test_learns_well_above_a_constant_prediction(patches, tmp_path):
    result = train(patches, FAST, tmp_path / "m.pt", build=stand_in())
    constant = constant_prediction_miou(patches)
    # 0.075 for the constant guess (one class of four right, IoU 0.3, averaged over 4 classes);
    # the per-pixel stand-in separates the four colours in 4 epochs (1.0 with seeds 0-4).
    assert constant < 0.1
    assert result.mean_iou > 0.8 > 8 * constant
    assert result.pixel_accuracy > 0.9
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_checkpoints_hold_the_contract_metadata(patches, tmp_path):
    out = tmp_path / "model.pt"
    result = train(patches, FAST, out, build=stand_in())
    assert result.best_path == out and result.last_path == tmp_path / "model.last.pt"
    best = checkpoint.load_checkpoint(out)
    meta = best["meta"]
    assert meta["input"] == {"bands": 3, "band_order": ["red", "green", "blue"], "dtype": "uint8", "scale": 255.0,
                             "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    assert meta["patch_size"] == SIZE
    assert meta["weights_source"]["kind"] == "none"
    assert meta["stages"] == [{**meta["stages"][0], "stage": "full", "first_epoch": 1, "last_epoch": 4}]
    assert len(meta["history"]) == 4 and len(meta["history"][0]["iou"]) == 11
    assert meta["history"][0]["iou"][0] is None  # code 1 appears nowhere: no IoU rather than NaN
    assert meta["epoch"] == result.best_epoch == meta["best"]["epoch"]
    assert meta["best"]["mean_iou"] == pytest.approx(result.mean_iou)
    last = checkpoint.load_checkpoint(result.last_path)["meta"]
    assert last["epoch"] == 4 and last["history"] == meta["history"]


def test_resume_continues_history_and_epoch_numbers_across_stages(patches, tmp_path):
    first = train(patches, TrainConfig(**{**FAST.__dict__, "stage": "head", "epochs": 2}), tmp_path / "head.pt",
                  build=stand_in())
    second = train(patches, TrainConfig(**{**FAST.__dict__, "stage": "layer4", "epochs": 3}), tmp_path / "l4.pt",
                   resume=first.best_path, build=stand_in())
    assert [r["epoch"] for r in second.history] == [1, 2, 3, 4, 5]
    assert [r["stage"] for r in second.history] == ["head", "head", "layer4", "layer4", "layer4"]
    assert second.history[:2] == first.history
    stages = checkpoint.load_checkpoint(second.best_path)["meta"]["stages"]
    assert [(s["stage"], s["first_epoch"], s["last_epoch"]) for s in stages] == [("head", 1, 2), ("layer4", 3, 5)]
    assert stages[1]["resumed_from"] == str(first.best_path)
    assert curves.stage_switches(second.history) == [(3, "layer4")]


def test_best_checkpoint_keeps_the_best_weights_and_the_whole_history(patches, tmp_path, monkeypatch):
    from scl_deeplab.model_core.training.loop import Loop

    scores = iter([0.6, 0.4, 0.3])
    real_validate = Loop.validate

    def worsening(self):
        loss, sc = real_validate(self)
        return loss, metrics.Scores(**{**sc.__dict__, "mean_iou": next(scores)})

    monkeypatch.setattr(Loop, "validate", worsening)
    result = train(patches, TrainConfig(**{**FAST.__dict__, "epochs": 3}), tmp_path / "m.pt", build=stand_in())
    best, last = checkpoint.load_checkpoint(result.best_path), checkpoint.load_checkpoint(result.last_path)
    assert result.best_epoch == 1 and result.mean_iou == 0.6
    assert best["meta"]["epoch"] == 1 and last["meta"]["epoch"] == 3
    assert [r["epoch"] for r in best["meta"]["history"]] == [1, 2, 3]  # resuming goes on after epoch 3
    assert not torch.equal(best["state_dict"]["classifier.1.weight"], last["state_dict"]["classifier.1.weight"])


def test_resuming_into_the_same_output_keeps_a_better_earlier_epoch(patches, tmp_path, monkeypatch):
    from scl_deeplab.model_core.training.loop import Loop

    scores = iter([0.6, 0.4, 0.5])  # epoch 1, then epochs 2 and 3 after the resume: both worse
    real_validate = Loop.validate

    def scripted(self):
        loss, sc = real_validate(self)
        return loss, metrics.Scores(**{**sc.__dict__, "mean_iou": next(scores)})

    monkeypatch.setattr(Loop, "validate", scripted)
    out = tmp_path / "m.pt"
    train(patches, TrainConfig(**{**FAST.__dict__, "epochs": 1}), out, build=stand_in())  # then "killed"
    (tmp_path / ".m.k3j9x2ab.part.pt").write_bytes(b"half")  # what the kill left behind
    first = checkpoint.load_checkpoint(out)
    result = train(patches, TrainConfig(**{**FAST.__dict__, "epochs": 2}), out, resume=checkpoint.last_path(out),
                   build=stand_in())
    best = checkpoint.load_checkpoint(out)
    assert result.best_epoch == 1 and result.mean_iou == 0.6
    assert best["meta"]["best"]["epoch"] == 1 and best["meta"]["epoch"] == 1
    assert [r["epoch"] for r in best["meta"]["history"]] == [1, 2, 3]
    assert all(torch.equal(v, best["state_dict"][k]) for k, v in first["state_dict"].items())
    assert checkpoint.load_checkpoint(result.last_path)["meta"]["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.last.pt", "m.pt"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(patches, tmp_path):
    out = tmp_path / "m.pt"
    with pytest.raises(TrainingError, match=r"loss became nan.*LEARNING_RATE.*epoch 2.*best \(epoch 1"):
        train(patches, FAST, out, build=stand_in(nan_after=8))  # 8 batches per epoch: NaN from epoch 2
    meta = checkpoint.load_checkpoint(out)["meta"]
    assert [r["epoch"] for r in meta["history"]] == [1]
    assert checkpoint.load_checkpoint(checkpoint.last_path(out))["meta"]["epoch"] == 1


def test_cancel_mid_epoch_keeps_the_complete_epoch(patches, tmp_path):
    out, progress = tmp_path / "m.pt", RecordingProgress(cancel_on="Epoch")
    with pytest.raises(Canceled, match=r"Canceled during epoch 2\. .*best \(epoch 1"):
        train(patches, FAST, out, build=stand_in(), progress=progress)
    assert checkpoint.load_checkpoint(out)["meta"]["epoch"] == 1
    epoch_lines = [line for line in progress.lines if line.startswith("Epoch")]
    assert len(epoch_lines) == 1
    assert epoch_lines[0].startswith("Epoch 1 (full, 1/4): train loss ") and " mIoU " in epoch_lines[0]
    assert epoch_lines[0].endswith("s - best so far, saved")
    assert 25 <= max(progress.percents) < 50  # progress moved within and past the first of four epochs


def test_out_of_memory_suggests_a_smaller_batch(patches, tmp_path):
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(DeviceError, match="ran out of memory at BATCH_SIZE 8. Set BATCH_SIZE to 4"):
        train(patches, TrainConfig(**{**FAST.__dict__, "batch_size": 8}), tmp_path / "m.pt", build=stand_in(fail=oom))
    with pytest.raises(DeviceError, match="BATCH_SIZE 2 is the smallest: make smaller patches"):
        train(patches, FAST, tmp_path / "m.pt", build=stand_in(fail=oom))
    assert not (tmp_path / "m.pt").exists()


def test_cuda_asked_for_without_a_gpu(patches, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match='"cuda" was asked for, but PyTorch sees no CUDA GPU'):
        train(patches, TrainConfig(**{**FAST.__dict__, "device": "cuda"}), tmp_path / "m.pt", build=stand_in())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_size": 1}, "BATCH_SIZE must be at least 2"),
        ({"epochs": 0}, "EPOCHS must be at least 1"),
        ({"stage": "layer3"}, 'Unknown stage "layer3"'),
        ({"learning_rate": 0.0}, "LEARNING_RATE must be above 0"),
    ],
)
def test_rejects_bad_settings(patches, tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        train(patches, TrainConfig(**{**FAST.__dict__, **change}), tmp_path / "m.pt", build=stand_in())


def test_resume_and_weights_file_together_are_refused(patches, tmp_path):
    config = TrainConfig(**{**FAST.__dict__, "weights_file": str(patches)})
    with pytest.raises(InputError, match="either a checkpoint to resume from or WEIGHTS_FILE"):
        train(patches, config, tmp_path / "m.pt", resume=tmp_path / "x.pt", build=stand_in())


def _edit(path: Path, **changes) -> Path:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def _empty(tmp: Path) -> Path:
    return _edit(write_manifest(tmp, n_train=1, n_val=1), patches=[])


def _no_val(tmp: Path) -> Path:
    return write_manifest(tmp, n_train=3, n_val=0)


def _missing(tmp: Path) -> Path:
    path = write_manifest(tmp, n_train=6, n_val=2)
    for i in range(5):
        (tmp / "images" / f"p{i:03d}.tif").unlink()
    return path


def _mixed_windows(tmp: Path) -> Path:
    path = write_manifest(tmp, n_train=3, n_val=1)
    data = json.loads(path.read_text())
    data["patches"][1]["window"]["width"] = data["patches"][1]["window"]["height"] = 48
    path.write_text(json.dumps(data))
    return path


def _mixed_files(tmp: Path) -> Path:
    return write_manifest(tmp, n_train=3, n_val=1, sizes={2: 48})


def test_a_patch_file_cut_short_is_named_as_damaged(tmp_path):
    from scl_deeplab.model_core.errors import RasterReadError

    index = write_manifest(tmp_path / "p", n_train=3, n_val=1)
    image = tmp_path / "p" / "images" / "p001.tif"
    with open(image, "r+b") as f:
        f.truncate(image.stat().st_size * 2 // 3)
    with pytest.raises(RasterReadError, match=f"raster {image} is damaged"):
        train(index, FAST, tmp_path / "m.pt", build=stand_in())
    assert not (tmp_path / "m.pt").exists()


def _bad_codes(tmp: Path) -> Path:
    codes = layout(0)
    codes[5, 5], codes[6, 6] = 15, 200
    return write_manifest(tmp, n_train=3, n_val=1, codes_override={1: codes})


def _not_a_manifest(tmp: Path) -> Path:
    tmp.mkdir()
    (tmp / "index.json").write_text('{"type": "FeatureCollection"}')
    return tmp / "index.json"


def _all_no_data(tmp: Path) -> Path:
    zeros = np.zeros((SIZE, SIZE), np.uint8)
    return write_manifest(tmp, n_train=2, n_val=1, codes_override={2: zeros})


@pytest.mark.parametrize(
    "make, error, message",
    [
        (_empty, ManifestError, "lists no patches"),
        (_no_val, ManifestError, "has no validation patches"),
        (_missing, ManifestError, r"5 patch files listed .* missing: images/p000.tif, images/p001.tif, images/p002.tif and 2 more"),
        (_mixed_windows, ManifestError, r"mixes patch sizes \(32x32, 48x48; patch_size says 32\)"),
        (_mixed_files, ManifestError, r"Patch p002 is 48x48 .* mixed sizes"),
        (_bad_codes, MaskCodeError, r"p001.tif holds codes 15, 200, which are not SCL codes 0-11"),
        (_not_a_manifest, ManifestError, "is not a patches manifest"),
        (_all_no_data, ManifestError, "validation patches .* hold only no-data pixels"),
    ],
)
def test_bad_manifests_are_refused_before_training(tmp_path, make, error, message):
    manifest = make(tmp_path / "patches")
    with pytest.raises(error, match=message):
        train(manifest, FAST, tmp_path / "m.pt", build=stand_in())
    assert not (tmp_path / "m.pt").exists()


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="does not exist. Run Make patches first"):
        load_manifest(tmp_path / "nowhere" / "index.json")


def test_dataset_normalises_and_augments_training_patches_only(patches):
    manifest = load_manifest(patches)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    record = manifest.train[0]
    with rasterio.open(record.image) as img, rasterio.open(record.mask) as msk:
        raw, codes = img.read(), msk.read(1)
    expected = (raw / np.float32(255.0) - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    val = PatchDataset([record], scale=255.0, mean=mean, std=std, augment=False)
    image, target = val[0]
    assert image.dtype == torch.float32 and image.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(image.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert target.dtype == torch.int64
    assert (target[:2] == scl.IGNORE_INDEX).all() and torch.equal(target[2:], torch.from_numpy(codes[2:] - 1).long())
    assert all(torch.equal(val[0][0], image) for _ in range(3))

    train_set = PatchDataset([record], scale=255.0, mean=mean, std=std, augment=True)
    variants = {train_set[(0, seed)][1].numpy().tobytes() for seed in range(24)}
    assert train_set[(0, 5)][1].numpy().tobytes() == train_set[(0, 5)][1].numpy().tobytes()  # seeded
    dihedral = set()
    for k in range(4):
        turned = np.rot90(target.numpy(), k)
        dihedral |= {turned.tobytes(), turned[:, ::-1].tobytes()}
    assert len(variants) >= 4 and variants <= dihedral
    augmented_image, augmented_target = train_set[(0, 3)]
    # image and mask move together: the no-data strip stays where its black pixels went
    ignore = augmented_target == scl.IGNORE_INDEX
    assert ignore.sum() == 2 * SIZE
    assert torch.allclose(augmented_image[:, ignore].mean(1), torch.tensor(expected[:, :2].mean((1, 2))), atol=0.2)


def test_a_last_training_batch_of_one_is_dropped(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path / "p", n_train=5, n_val=1))
    train_loader, val_loader = loaders(manifest, batch_size=2, mean=(0, 0, 0), std=(1, 1, 1))
    assert [len(b[0]) for b in train_loader] == [2, 2]
    train_loader, _ = loaders(manifest, batch_size=3, mean=(0, 0, 0), std=(1, 1, 1))
    assert sorted(len(b[0]) for b in train_loader) == [2, 3]
    assert len(val_loader) == 1


def test_class_weights_favour_rare_classes():
    histogram = np.zeros(12, np.int64)
    histogram[0] = 10**6  # no data: never weighted
    histogram[4], histogram[6], histogram[9], histogram[11] = 8000, 1000, 1000, 10
    weights = class_weights(histogram)
    assert weights.shape == (11,)
    assert weights[3] == pytest.approx(1000 / 8000)  # vegetation: median frequency / its own
    assert weights[5] == pytest.approx(1.0) and weights[8] == pytest.approx(1.0)
    assert weights[10] == pytest.approx(10.0)  # snow would get 100: clipped
    assert weights[0] == 1.0  # absent from training


def test_class_weighted_training_with_aux_head(patches, tmp_path):
    config = TrainConfig(**{**FAST.__dict__, "epochs": 2, "class_weights": True, "aux": True})
    result = train(patches, config, tmp_path / "m.pt", build=stand_in())
    state = checkpoint.load_checkpoint(result.best_path)["state_dict"]
    assert "aux_classifier.weight" in state and result.meta["aux"] is True
    assert result.meta["stages"][0]["class_weights"] is True
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_curves_figure_csv_and_json(tmp_path):
    history = [
        {"epoch": e, "stage": "head" if e <= 3 else "layer4", "train_loss": 2.0 / e, "val_loss": 2.2 / e,
         "pixel_accuracy": 0.5 + e / 20, "mean_iou": 0.3 + e / 20, "kappa": 0.4, "learning_rate": 1e-3,
         "seconds": 10.0, "iou": [None] + [0.5] * 10}
        for e in range(1, 6)
    ]
    paths = curves.write_curves(history, tmp_path / "curves.png")
    assert paths["csv"] == tmp_path / "curves.history.csv" and paths["json"] == tmp_path / "curves.history.json"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(paths["png"]).shape
    assert width > 800 and height > 300
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("epoch,stage,train_loss,val_loss,pixel_accuracy,mean_iou")
    assert rows[0].endswith("iou_10,iou_11") and len(rows) == 6
    assert rows[4].startswith("4,layer4,0.5,0.55,0.7")
    saved = json.loads(paths["json"].read_text())
    assert saved["history"] == history and saved["classes"][10] == {"code": 11, "name": "Snow or ice"}
    assert curves.stage_switches(history) == [(4, "layer4")]


@pytest.fixture(scope="module")
def real_patches(tmp_path_factory) -> Path:
    from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
    from scl_deeplab.model_core.data.synthetic import make_sample_scene

    root = tmp_path_factory.mktemp("scene")
    scene = make_sample_scene(root / "image.tif", root / "scl.tif", size=96, seed=2)
    return make_patches(scene.image, scene.scl, root / "patches", PatchConfig(patch_size_px=32, preview_patches=0)).index


def test_cli_trains_the_real_deeplab(real_patches, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    code = cli.main(["train", "--patches", str(real_patches.parent), "--stage", "head", "--epochs", "1",
                     "--batch-size", "4", "--pretrained", "none", "--device", "cpu", "--seed", "3", "--output", str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["best_epoch"] == 1 and 0 <= summary["mean_iou"] <= 1
    assert Path(summary["curves"]) == tmp_path / "cli_curves.png" and (tmp_path / "cli_curves.history.csv").is_file()
    model, meta = checkpoint.load_model(out, "cpu")
    assert meta["stages"][0]["stage"] == "head" and meta["stages"][0]["seed"] == 3
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32))["out"].shape == (1, 11, 32, 32)


def test_cli_reports_errors_without_a_traceback(tmp_path, caplog):
    code = cli.main(["train", "--patches", str(tmp_path), "--output", str(tmp_path / "m.pt")])
    assert code == 1
    assert "does not exist. Run Make patches first" in caplog.text
    assert "train" in cli.parser().format_help()
