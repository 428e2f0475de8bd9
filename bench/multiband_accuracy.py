"""Issue 18 notes: RGB vs RGB+B8A+B11+B12 on ../shared/s2-multiband, trained on some dates, evaluated on others.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python bench/multiband_accuracy.py EPOCHS [rgb,ms] [LEARNING_RATE]`` (writes /tmp/h9bench).
One place (worldcereal T31UES 280849, 72 dates at 20 m, 32 x 32 px): dates i % 3 != 2 train (a fifth of
them validate), dates i % 3 == 2 are evaluated; 10 m bands averaged to 20 m. Same recipe for both band sets:
random weights, full network, class weights, batch 8, learning rate 1e-3, seed 0. Not a test dependency.
"""
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.evaluation.metrics import confusion_from_codes, scores
from scl_deeplab.model_core.prediction.config import PredictConfig
from scl_deeplab.model_core.prediction.predict import clear_model_cache, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.model_core.training.config import TrainConfig
from scl_deeplab.model_core.training.train import train

SRC = Path("/work/shared/s2-multiband/worldcereal_T31UES_0000280849BAC91C")
OUT = Path("/tmp/h9bench")
EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
KINDS = {"rgb": ("B04", "B03", "B02"), "ms": ("B04", "B03", "B02", "B8A", "B11", "B12")}

def band(name):
    res = "10m" if name in ("B02", "B03", "B04", "B08") else "20m"
    with rasterio.open(SRC / f"{name}_{res}.tif") as src:
        data = src.read().astype(np.float64)
        profile = src.profile
    if res == "10m":  # 10 m to 20 m: mean of the valid 2 x 2 pixels
        d, h, w = data.shape
        b = data.reshape(d, h // 2, 2, w // 2, 2)
        n = (b > 0).sum(axis=(2, 4))
        data = np.where(n > 0, b.sum(axis=(2, 4)) / np.maximum(n, 1), 0)
    return np.rint(data).astype(np.uint16)

with rasterio.open(SRC / "SCL_20m.tif") as src:
    scl, prof = src.read(), src.profile
bands = {n: band(n) for n in KINDS["ms"]}
dates = list(csv.DictReader(open(SRC / "dates.csv")))
n = scl.shape[0]
train_idx = [i for i in range(n) if i % 3 != 2]
eval_idx = [i for i in range(n) if i % 3 == 2]

def write(kind, i):
    folder = OUT / kind
    folder.mkdir(parents=True, exist_ok=True)
    img = folder / f"d{i:02d}_scene.tif"
    p = dict(prof, count=len(KINDS[kind]), dtype="uint16", nodata=0)
    with rasterio.open(img, "w", **p) as dst:
        dst.write(np.stack([bands[b][i] for b in KINDS[kind]]))
        dst.descriptions = KINDS[kind]
    lab = folder / f"d{i:02d}_scl.tif"
    with rasterio.open(lab, "w", **dict(prof, count=1, dtype="uint8", nodata=0)) as dst:
        dst.write(scl[i].astype(np.uint8), 1)
    return img, lab

results = {}
for kind in (sys.argv[2].split(",") if len(sys.argv) > 2 else KINDS):
    scenes = {i: write(kind, i) for i in range(n)}
    lst = OUT / kind / "train.txt"
    lst.write_text("\n".join(f"{scenes[i][0].name},{scenes[i][1].name}" for i in train_idx))
    from scl_deeplab.model_core.data.scenes import read_scene_list
    pc = PatchConfig(patch_size_px=32, bands=tuple(range(1, len(KINDS[kind]) + 1)), split="scenes", val_fraction=0.2, min_valid_fraction=0.5, overwrite=True, seed=0)
    res = make_patches(read_scene_list(lst), OUT / kind / "patches", pc)
    learning_rate = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3
    cfg = TrainConfig(stage="full", epochs=EPOCHS, batch_size=8, learning_rate=learning_rate, pretrained="none", device="cpu",
                      precision="float32", seed=0, class_weights=True)
    t0 = time.perf_counter()
    tr = train(res.index, cfg, OUT / kind / "model.pt")
    seconds = time.perf_counter() - t0
    clear_model_cache()
    conf = 0
    for i in eval_idx:
        img, lab = scenes[i]
        pred = OUT / kind / f"pred_{i:02d}.tif"
        predict_scene_from_checkpoint(img, OUT / kind / "model.pt", pred,
                                      PredictConfig(tiling=TilingConfig(32, 0), device="cpu", precision="float32"))
        with rasterio.open(pred) as a, rasterio.open(lab) as b:
            conf = conf + confusion_from_codes(b.read(1), a.read(1))
    sc = scores(conf)
    iou = {c: (None if np.isnan(sc.iou[c - 1]) else round(float(sc.iou[c - 1]), 3)) for c in (3, 6, 10, 11)}
    present = {int(c): int(conf[c - 1].sum()) for c in range(1, 12)}
    results[kind] = {"train_patches": res.train_count, "val_patches": res.val_count, "epochs": EPOCHS,
                     "train_seconds": round(seconds, 1), "best_epoch": tr.best_epoch,
                     "pixel_accuracy": round(float(sc.pixel_accuracy), 3), "miou": round(float(sc.mean_iou), 3),
                     "iou_shadow3_water6_cirrus10_snow11": iou, "eval_pixels_by_code": present}
    print(kind, json.dumps(results[kind]), flush=True)
(OUT / f"results_{'_'.join(results)}.json").write_text(json.dumps(results, indent=1))
