"""ONNX Runtime rows of the benchmark: the exported model in float32 and int8 beside the torch paths.

Both files are exported from the bench checkpoint (int8 calibrated on 8 (quick) or 32 patches
of the bench model's own training scene) and predict the predict section's scene with
the naive baseline's tiles (no overlap), so agreement with the baseline and speed
per tile compare directly with the torch rows. The full-tile figure scales each
runtime's best seconds per tile to a whole 20 m Sentinel-2 tile (5490 x 5490 px)
with the predict defaults (512 px tiles, 64 px overlap).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import bench_model
import numpy as np
import train_bench
import workloads as w
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig, plan_tiles

FULL_TILE_PX = 5490  # a Sentinel-2 tile at 20 m
TILES0 = PredictConfig(tiling=TilingConfig(512, 0))


def full_tile_tiles() -> int:
    """Tiles a 5490 x 5490 px scene is cut into at 512 px with 64 px overlap (predict's default for large patches)."""
    default = TilingConfig(512, 64)
    return len(plan_tiles(FULL_TILE_PX, FULL_TILE_PX, default.tile_size_px, default.overlap_px))


def onnx_section(tmp: Path, ckpt: Path, s: dict[str, Any], predict: dict[str, Any]) -> dict[str, Any]:
    """Export, then time and compare the ONNX float32 and int8 paths; ``predict`` is the predict section."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return {"skipped": "onnx or onnxruntime is not installed (pip install -r requirements.txt)"}
    from scl_deeplab.model_core.net.onnx_export import export_onnx

    manifest = train_bench.patches(tmp, bench_model.SETTINGS["train_scene_px"], bench_model.SETTINGS["patch_px"])
    models = {"onnx_fp32_tiles0": tmp / "bench.onnx", "onnx_int8_tiles0": tmp / "bench_int8.onnx"}
    export_s = {}
    for name, path in models.items():
        t0 = time.perf_counter()
        export_onnx(ckpt, path, int8="int8" in name, patches=manifest, calibration_tiles=s["calibration_tiles"])
        export_s[name] = time.perf_counter() - t0
    width, height = predict["scene_px"]
    image = w.scene(tmp, f"scene_{width}x{height}", width, height)
    outputs = {name: tmp / f"pred_{name}.tif" for name in models}
    runs = {name: (lambda n=name: predict_scene_from_checkpoint(image, models[n], outputs[n], TILES0))
            for name in models}
    timings = w.interleaved(runs, s["reps"])
    naive_codes = np.load(tmp / "pred_naive.npy")
    single = w.single_tile_pixels(width, height)
    truth = w.read_codes(tmp / f"scene_{width}x{height}_scl.tif")
    codes = {name: w.read_codes(path) for name, path in outputs.items()}
    mp = width * height / 1e6
    out: dict[str, Any] = {"calibration_tiles": s["calibration_tiles"], "full_tile_tiles": full_tile_tiles()}
    for name in models:
        result = timings[name]["result"]
        median = timings[name]["median"]
        out[name] = {"s": {k: v for k, v in timings[name].items() if k != "result"}, "tiles": result.tiles,
                     "device": result.device, "export_s": export_s[name],
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
    lines = [f"\nONNX Runtime (exported bench model, baseline tiles; int8 calibrated on {o['calibration_tiles']} "
             "patches):"]
    for name in ("onnx_fp32_tiles0", "onnx_int8_tiles0"):
        e = o[name]
        lines.append(f"  {name:<20}{e['tiles']:>6}  {w_spread(e['s']):<34}{e['s_per_tile']:>8.2f}{e['mp_per_s']:>8.3f}"
                     f"  {e['speedup']:.2f}x  agree {e['agreement_single'] * 100:.2f}% (single)  "
                     f"{e['size_mb']:.0f} MB, export {e['export_s']:.0f} s")
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
