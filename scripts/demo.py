"""`make demo`: the whole SCL DeepLab workflow, headless, through qgis_process.

One algorithm per step, as a pipeline would run it: samplescene (or your DATA)
-> makepatches -> trainhead -> finetunelayer4 -> predict -> evaluate, then a QGIS
project with the layers styled for comparison. Settings come from the environment
(make demo SIZE=2048 HEAD_EPOCHS=10 ...):

  DATA             an L2A product (.SAFE folder or .zip), or IMAGE.tif,SCL.tif;
                   default: two synthetic sample scenes (train on one, evaluate on the other)
  OUT              output folder (default demo_output)
  SIZE             sample scene size in pixels (default 1536)
  PATCH_SIZE       training patch size (default 256)
  HEAD_EPOCHS      epochs of the head-only stage (default 4)
  FINETUNE_EPOCHS  epochs of the second stage (default 6)
  UNFREEZE         layer4 or full (default: layer4 with pretrained weights on disk, else full)
  BATCH_SIZE       training batch size (default 4)
  RESOLUTION       resolution in metres when DATA is an L2A product (default 20)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "scripts" / "qgis-process"


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def run(step: str, algorithm: str, **params: object) -> dict:
    """Run one algorithm through the qgis_process wrapper, streaming its log; return its outputs."""
    print(f"\n=== {step}: scldeeplab:{algorithm}", flush=True)
    args = [str(WRAPPER), "run", f"scldeeplab:{algorithm}", "--"]
    args += [f"{k}={v}" for k, v in params.items() if v is not None]
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: list[str] = []
    in_results = False
    for line in proc.stdout:
        lines.append(line)
        in_results = in_results or line.startswith("Results")
        echoed = line.strip() and not line.startswith("----") and not in_results
        if echoed and not re.match(r"^\s*[A-Z_]+:\t", line):
            print(f"  {line.rstrip()}", flush=True)
    err = proc.stderr.read()
    proc.wait()
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"{step} failed (qgis_process exit {proc.returncode}); see the messages above.")
    results: dict = {"_seconds": seconds}
    text = "".join(lines)
    for line in text.split("Results", 1)[-1].splitlines():
        if ":\t" in line:
            key, value = line.split(":\t", 1)
            results[key.strip()] = value.strip()
    print(f"  done in {seconds:.0f} s", flush=True)
    return results


def inputs(out: Path) -> tuple[dict[str, str], dict[str, str], list[float]]:
    """The training scene and the evaluation scene (image and SCL paths), and their seconds."""
    data = os.environ.get("DATA")
    if not data:
        size = env("SIZE", "1536")
        train = run("1/7 sample scene (training)", "samplescene", SIZE=size, SEED=1,
                    OUTPUT_IMAGE=out / "train_scene.tif", OUTPUT_SCL=out / "train_scl.tif")
        test = run("1/7 sample scene (evaluation)", "samplescene", SIZE=size, SEED=2,
                   OUTPUT_IMAGE=out / "scene.tif", OUTPUT_SCL=out / "reference_scl.tif")
        return ({"image": train["OUTPUT_IMAGE"], "scl": train["OUTPUT_SCL"]},
                {"image": test["OUTPUT_IMAGE"], "scl": test["OUTPUT_SCL"]},
                [train["_seconds"] + test["_seconds"]])
    if "," in data:
        image, scl = (p.strip() for p in data.split(",", 1))
        scene = {"image": image, "scl": scl}
        return scene, scene, [0.0]
    prepared = run("1/7 prepare L2A product", "preparel2a", INPUT=data, SOURCE=0,
                   RESOLUTION=env("RESOLUTION", "20"),
                   OUTPUT_IMAGE=out / "scene.tif", OUTPUT_SCL=out / "reference_scl.tif")
    scene = {"image": prepared["OUTPUT_IMAGE"], "scl": prepared["OUTPUT_SCL"]}
    return scene, scene, [prepared["_seconds"]]


def write_project(out: Path, layers: list[tuple[Path, str]]) -> Path:
    """A QGIS project with the layers (top first), each styled by its .qml sidecar."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    app = QgsApplication([], False)
    app.initQgis()
    project = QgsProject.instance()
    for path, name in reversed(layers):
        if not path.exists():
            continue
        layer = QgsRasterLayer(str(path), name)
        style = path.with_suffix(".qml")
        if style.exists():
            layer.loadNamedStyle(str(style))
        project.addMapLayer(layer)
    target = out / "comparison.qgz"
    project.write(str(target))
    app.exitQgis()
    return target


def second_stage() -> str:
    """layer4 as the seed does when pretrained weights are on disk; else the whole network.

    A frozen random backbone carries little information, so without COCO or ImageNet
    weights the second stage trains everything to get a usable model.
    """
    from scl_deeplab.model_core.net import weights

    names = weights.coco_file_names() + weights.imagenet_file_names()
    if any((weights.hub_checkpoints() / name).exists() for name in names):
        return "layer4"
    print("No pretrained weights on disk: the second stage unfreezes the full network (UNFREEZE=full).")
    return "full"


def main() -> None:
    out = Path(env("OUT", str(ROOT / "demo_output"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    times: dict[str, float] = {}
    train_scene, test_scene, seconds = inputs(out)
    times["scenes"] = sum(seconds)

    patches = run("2/7 make patches", "makepatches", INPUT=train_scene["image"], MASK=train_scene["scl"],
                  PATCH_SIZE=env("PATCH_SIZE", "256"), SEED=0, OVERWRITE="true",
                  OUTPUT_FOLDER=out / "patches")
    times["makepatches"] = patches["_seconds"]
    head = run("3/7 train the classifier head (backbone frozen)", "trainhead", PATCHES=patches["OUTPUT_INDEX"],
               EPOCHS=env("HEAD_EPOCHS", "4"), BATCH_SIZE=env("BATCH_SIZE", "4"), SEED=0,
               OUTPUT_MODEL=out / "model_head.pt", OUTPUT_CURVES=out / "curves_head.png")
    times["trainhead"] = head["_seconds"]
    tuned = run("4/7 fine-tune (layer4, or full without pretrained weights)", "finetunelayer4", MODEL=head["OUTPUT_MODEL"], PATCHES=patches["OUTPUT_INDEX"],
                EPOCHS=env("FINETUNE_EPOCHS", "6"), BATCH_SIZE=env("BATCH_SIZE", "4"), SEED=0,
                UNFREEZE=env("UNFREEZE", second_stage()),
                OUTPUT_MODEL=out / "model.pt", OUTPUT_CURVES=out / "learning_curves.png")
    times["finetunelayer4"] = tuned["_seconds"]
    predicted = run("5/7 predict the evaluation scene", "predict", INPUT=test_scene["image"], MODEL=tuned["OUTPUT_MODEL"],
                    OUTPUT=out / "prediction.tif", OUTPUT_CONFIDENCE=out / "confidence.tif")
    times["predict"] = predicted["_seconds"]
    evaluated = run("6/7 evaluate against the reference SCL", "evaluate", PREDICTION=predicted["OUTPUT"],
                    REFERENCE=test_scene["scl"], IMAGE=test_scene["image"],
                    OUTPUT_REPORT=out / "report.html", OUTPUT_MATRIX=out / "confusion_matrix.csv",
                    OUTPUT_MATRIX_PNG=out / "confusion_matrix.png", OUTPUT_DISAGREEMENT=out / "disagreement.tif",
                    OUTPUT_FIGURE=out / "result_figure.png", OUTPUT_METRICS=out / "metrics.json")
    times["evaluate"] = evaluated["_seconds"]

    print("\n=== 7/7 QGIS project", flush=True)
    project = write_project(out, [
        (out / "disagreement.tif", "Disagreement (reference class where wrong)"),
        (Path(predicted["OUTPUT"]), "Predicted SCL"),
        (Path(test_scene["scl"]), "Reference SCL"),
        (out / "confidence.tif", "Confidence"),
        (Path(test_scene["image"]), "True colour"),
    ])
    total = time.monotonic() - started
    print("\n=== Summary")
    print(f"  validation mIoU after head: {float(head['MIOU']):.3f}, after fine-tuning: {float(tuned['MIOU']):.3f}")
    print(f"  evaluation scene: pixel accuracy {float(evaluated['PIXEL_ACCURACY']):.3f}, "
          f"mIoU {float(evaluated['MIOU']):.3f}, kappa {evaluated.get('KAPPA')}")
    print("  seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; total {total:.0f}")
    print(f"  outputs in {out}: open {project.name} in QGIS, report.html in a browser")


if __name__ == "__main__":
    main()
