"""ONNX Runtime rows of the benchmark: the exported model in float32 and int8 beside the torch paths.

Both files come from one export of the bench checkpoint (int8 calibrated on 8 (quick) or 32
patches of the bench model's own training scene; the float32 file is the one it was
quantised from) and predict the predict section's scene with the naive baseline's tiles
(no overlap), so agreement with the baseline and speed per tile compare directly with
the torch rows. The exported files are cached under ``bench/.cache/``, keyed by the
checkpoint's bytes, the calibration settings, the export code and the library versions:
a later run with the same inputs reuses them (the table says so, with the seconds the
export took when it ran). The full-tile figure scales each runtime's best seconds per
tile to a whole 20 m Sentinel-2 tile (5490 x 5490 px) with the predict defaults (512 px
tiles, 64 px overlap).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import bench_cache
import bench_model
import numpy as np
import train_bench
import workloads as w
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig, plan_tiles

FULL_TILE_PX = 5490  # a Sentinel-2 tile at 20 m
TILES0 = PredictConfig(tiling=TilingConfig(512, 0))


def export_key(ckpt: Path, calibration_tiles: int) -> str:
    """A short hash of everything the exported files depend on (model_core's code included): the cache entry's name."""
    import onnx
    import onnxruntime
    import torch

    return bench_cache.key({
        "checkpoint": bench_cache.sha256_of(ckpt), "calibration_tiles": calibration_tiles,
        "calibration_scene_px": bench_model.SETTINGS["train_scene_px"],
        "calibration_patch_px": bench_model.SETTINGS["patch_px"], "code": bench_cache.code_digest(),
        "versions": [torch.__version__, onnx.__version__, onnxruntime.__version__]})


def exported_models(tmp: Path, ckpt: Path, calibration_tiles: int) -> tuple[dict[str, Path], dict[str, Any]]:
    """The float32 and int8 ONNX files of ``ckpt`` (one export, cached), and how they were made."""
    from scl_deeplab.model_core.net.onnx_export import export_onnx

    key = export_key(ckpt, calibration_tiles)
    models = {"onnx_fp32_tiles0": bench_cache.CACHE / f"onnx_{key}_fp32.onnx",
              "onnx_int8_tiles0": bench_cache.CACHE / f"onnx_{key}_int8.onnx"}
    info_path = bench_cache.CACHE / f"onnx_{key}.json"
    if info_path.exists() and all(path.exists() for path in models.values()):
        return models, {**json.loads(info_path.read_text(encoding="utf-8")), "cached": True}
    manifest = train_bench.patches(tmp, bench_model.SETTINGS["train_scene_px"], bench_model.SETTINGS["patch_px"])
    t0 = time.perf_counter()
    result = export_onnx(ckpt, models["onnx_int8_tiles0"], int8=True, patches=manifest,
                         calibration_tiles=calibration_tiles, float32_copy=models["onnx_fp32_tiles0"])
    info = {"export_s": time.perf_counter() - t0, "kept_float": list(result.kept_float)}
    bench_cache.write_json(info_path, info)  # written last: an entry without it is made again
    return models, {**info, "cached": False}


def full_tile_tiles() -> int:
    """Tiles a 5490 x 5490 px scene is cut into at 512 px with 64 px overlap (predict's default for large patches)."""
    default = TilingConfig(512, 64)
    return len(plan_tiles(FULL_TILE_PX, FULL_TILE_PX, default.tile_size_px, default.overlap_px))


def onnx_section(tmp: Path, ckpt: Path, s: dict[str, Any], predict: dict[str, Any]) -> dict[str, Any]:
    """Export, then time and compare the ONNX float32 and int8 paths; ``predict`` is the predict section."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return {"skipped": "onnx or onnxruntime is not installed (pip install -r requirements.txt)"}
    models, export = exported_models(tmp, ckpt, s["calibration_tiles"])
    width, height = predict["scene_px"]
    image = w.scene(tmp, f"scene_{width}x{height}", width, height)
    outputs = {name: tmp / f"pred_{name}.tif" for name in models}
    runs = {name: (lambda n=name: predict_scene_from_checkpoint(image, models[n], outputs[n], TILES0))
            for name in models}
    # One model after the other, not in turns: the process caches one ONNX session, as it does one torch model,
    # so taking turns timed a new session (0.09 s) and its cold first run on every tile (int8 0.45 s against 0.34).
    # The price: a change of load during the section falls on one model more than on the other.
    timings = {name: w.timed(run, s["reps"]) for name, run in runs.items()}
    naive_codes = np.load(tmp / "pred_naive.npy")
    single = w.single_tile_pixels(width, height)
    truth = w.read_codes(tmp / f"scene_{width}x{height}_scl.tif")
    codes = {name: w.read_codes(path) for name, path in outputs.items()}
    mp = width * height / 1e6
    out: dict[str, Any] = {"calibration_tiles": s["calibration_tiles"], "full_tile_tiles": full_tile_tiles(),
                           "export": export}
    for name in models:
        result = timings[name]["result"]
        median = timings[name]["median"]
        out[name] = {"s": {k: v for k, v in timings[name].items() if k != "result"}, "tiles": result.tiles,
                     "device": result.device,
                     "s_per_tile": median / result.tiles, "mp_per_s": mp / median,
                     "speedup": (mp / median) / predict["naive"]["mp_per_s"],
                     "agreement": w.agreement(codes[name], naive_codes),
                     "agreement_single": w.agreement(codes[name], naive_codes, single),
                     "accuracy": w.agreement(codes[name], truth),
                     "size_mb": models[name].stat().st_size / 1e6}
    out["onnx_int8_tiles0"]["agreement_with_fp32"] = w.agreement(codes["onnx_int8_tiles0"], codes["onnx_fp32_tiles0"])
    torch_paths = [n for n in ("plugin_tiles0", "fast_tiles0", "plugin_fp32_tiles0") if n in predict]
    best_torch = min(torch_paths, key=lambda n: predict[n]["s_per_tile"])
    best_onnx = min(models, key=lambda n: out[n]["s_per_tile"])
    out["full_tile_s"] = {
        "naive": predict["naive"]["s_per_tile"] * out["full_tile_tiles"],
        f"torch ({best_torch})": predict[best_torch]["s_per_tile"] * out["full_tile_tiles"],
        f"onnx ({best_onnx})": out[best_onnx]["s_per_tile"] * out["full_tile_tiles"],
    }
    out["torch_bf16_speedup"] = predict["plugin_tiles0"]["speedup"]
    return out


def table_lines(o: dict[str, Any]) -> list[str]:
    """The ONNX rows and the full-tile figure for the bench's table."""
    if "skipped" in o:
        return [f"\nONNX Runtime: skipped, {o['skipped']}."]
    export = o["export"]
    made = (f"exported in {export['export_s']:.0f} s by an earlier run, cached in bench/.cache" if export["cached"]
            else f"exported now in {export['export_s']:.0f} s (one trace; cached for later runs)")
    lines = [f"\nONNX Runtime (exported bench model, {made}; baseline tiles; int8 calibrated on "
             f"{o['calibration_tiles']} patches):"]
    for name in ("onnx_fp32_tiles0", "onnx_int8_tiles0"):
        e = o[name]
        lines.append(f"  {name:<20}{e['tiles']:>6}  {w_spread(e['s']):<34}{e['s_per_tile']:>8.2f}{e['mp_per_s']:>8.3f}"
                     f"  {e['speedup']:.2f}x  agree {e['agreement_single'] * 100:.2f}% (single)  "
                     f"{e['size_mb']:.0f} MB")
    lines.append(f"  int8 agrees with ONNX float32 on {o['onnx_int8_tiles0']['agreement_with_fp32'] * 100:.2f}% "
                 "of valid pixels.")
    lines.append(f"Full 20 m Sentinel-2 tile ({FULL_TILE_PX} x {FULL_TILE_PX} px, {o['full_tile_tiles']} tiles of "
                 "512 px, 64 px overlap), seconds per tile x tiles on this CPU:")
    for name, seconds in o["full_tile_s"].items():
        lines.append(f"  {name:<34}{seconds:>8.0f} s ({seconds / 60:.1f} min)")
    return lines


def w_spread(t: dict[str, Any]) -> str:
    return f"{t['median']:.2f} s ({t['min']:.2f}-{t['max']:.2f}, n={t['n']})"


def verdict_rows(o: dict[str, Any], fast_cpu: bool) -> dict[str, tuple[float, str, float]]:
    """The issue's ONNX targets: int8 >= 2x naive on AVX2-only CPUs, >= torch bf16 where native; agreement >= 99 %."""
    if "skipped" in o:
        return {}
    int8 = o["onnx_int8_tiles0"]
    return {"onnx_int8_speedup": (int8["speedup"], ">=", o["torch_bf16_speedup"] if fast_cpu else 2.0),
            "onnx_int8_agreement": (int8["agreement_with_fp32"], ">=", 0.99)}


def summary(o: dict[str, Any]) -> dict[str, Any]:
    """The ONNX figures of the bench's one-line JSON summary."""
    if "skipped" in o:
        return {"skipped": o["skipped"]}
    fp32, int8 = o["onnx_fp32_tiles0"], o["onnx_int8_tiles0"]
    return {"fp32_speedup": round(fp32["speedup"], 3), "int8_speedup": round(int8["speedup"], 3),
            "int8_s_per_tile": round(int8["s_per_tile"], 3), "int8_agreement": round(int8["agreement_with_fp32"], 5),
            "fp32_agreement_naive": round(fp32["agreement_single"], 5),
            "full_tile_s": {k: round(v) for k, v in o["full_tile_s"].items()}}
