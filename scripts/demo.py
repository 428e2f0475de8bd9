"""`make demo`: the whole SCL DeepLab workflow, headless, through qgis_process.

One algorithm per step, as a pipeline would run it: samplescene (or your DATA)
-> makepatches -> trainhead -> finetunelayer4 -> predict -> evaluate, then a QGIS
project with the layers styled for comparison. Settings come from the environment
(make demo SIZE=2048 HEAD_EPOCHS=10 ...):

  DATA             an L2A product (.SAFE folder or .zip), or IMAGE.tif,SCL.tif;
                   default: two synthetic sample scenes (train on one, evaluate on the other)
  OUT              output folder (default demo_output)
  SIZE             sample scene size in pixels (default 1536)
  PATCH_SIZE       training patch size (default 256 with pretrained weights; 128 without)
  HEAD_EPOCHS      epochs of the first stage (default 4 with pretrained weights; 24 without,
                   when trainhead follows the from-scratch recipe and trains the full network)
  FINETUNE_EPOCHS  epochs of the second stage (default 6 with pretrained weights; 4 without)
  UNFREEZE         layer4 or full (default: layer4 with pretrained weights on disk, else full)
  BATCH_SIZE       training batch size (default 4)
  RESOLUTION       resolution in metres when DATA is an L2A product (default 20)

The summary sets the model's scores on the evaluation scene beside two
baselines on the same pixels: the majority class and a per-pixel colour lookup
fitted on the training patches (model_core/evaluation/baselines.py).
"""

from __future__ import annotations

import json
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


def pretrained_on_disk() -> bool:
    """Whether COCO or ImageNet weights are where PRETRAINED=auto looks."""
    from scl_deeplab.model_core.net import weights

    names = weights.coco_file_names() + weights.imagenet_file_names()
    return any((weights.hub_checkpoints() / name).exists() for name in names)


def recipe() -> dict[str, str]:
    """Epochs and second stage: the seed's head -> layer4 on pretrained weights, else the from-scratch recipe.

    Without weights, trainhead trains the full network at its learning rate (most
    of the epochs), and the second stage goes on with the full network at a tenth
    of it. Every step then trains the whole network, so patches are smaller: four
    times the steps in the same time.
    """
    if pretrained_on_disk():
        return {"PATCH_SIZE": "256", "HEAD_EPOCHS": "4", "FINETUNE_EPOCHS": "6", "UNFREEZE": "layer4",
                "FIRST": "train the classifier head (backbone frozen)", "SECOND": "fine-tune layer4"}
    print("No pretrained weights on disk: the from-scratch recipe (the full network in both stages).")
    return {"PATCH_SIZE": "128", "HEAD_EPOCHS": "24", "FINETUNE_EPOCHS": "4", "UNFREEZE": "full",
            "FIRST": "train the full network from random weights (trainhead, from-scratch recipe)",
            "SECOND": "fine-tune the full network at a tenth of the learning rate"}


def baselines(index: str, image: str, reference: str) -> dict[str, dict[str, float]]:
    """Majority class and colour lookup, fitted on the training patches, scored on the evaluation scene."""
    from scl_deeplab.model_core.evaluation.baselines import baseline_confusions, fit_lookup
    from scl_deeplab.model_core.evaluation.metrics import scores
    from scl_deeplab.model_core.training.dataset import load_manifest

    manifest = load_manifest(index)
    lookup = fit_lookup([(r.image, r.mask) for r in manifest.train], manifest.input_scale)
    by_majority, by_lookup = baseline_confusions(Path(image), Path(reference), lookup)
    return {name: {"pixel_accuracy": sc.pixel_accuracy, "miou": sc.mean_iou}
            for name, sc in (("majority", scores(by_majority)), ("lookup", scores(by_lookup)))}


def classes_line(metrics_json: Path) -> str:
    """Share of the evaluation scene's valid pixels per class, in the reference and in the prediction."""
    from scl_deeplab.model_core import scl

    data = json.loads(metrics_json.read_text(encoding="utf-8"))
    m = [[int(v) for v in row] for row in data["confusion_matrix"]]
    total = sum(map(sum, m)) or 1
    parts = []
    for i, c in enumerate(scl.LEARNED):
        ref, pred = sum(m[i]), sum(row[i] for row in m)
        if ref or pred:
            parts.append(f"{c.name} {100 * ref / total:.1f}/{100 * pred / total:.1f}")
    return "  % of pixels per class, reference/prediction: " + ", ".join(parts)


def main() -> None:
    out = Path(env("OUT", str(ROOT / "demo_output"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    times: dict[str, float] = {}
    defaults = recipe()
    train_scene, test_scene, seconds = inputs(out)
    times["scenes"] = sum(seconds)

    patches = run("2/7 make patches", "makepatches", INPUT=train_scene["image"], MASK=train_scene["scl"],
                  PATCH_SIZE=env("PATCH_SIZE", defaults["PATCH_SIZE"]), SEED=0, OVERWRITE="true",
                  OUTPUT_FOLDER=out / "patches")
    times["makepatches"] = patches["_seconds"]
    head = run(f"3/7 {defaults['FIRST']}", "trainhead", PATCHES=patches["OUTPUT_INDEX"],
               EPOCHS=env("HEAD_EPOCHS", defaults["HEAD_EPOCHS"]), BATCH_SIZE=env("BATCH_SIZE", "4"), SEED=0,
               OUTPUT_MODEL=out / "model_head.pt", OUTPUT_CURVES=out / "curves_head.png")
    times["trainhead"] = head["_seconds"]
    tuned = run(f"4/7 {defaults['SECOND']}", "finetunelayer4", MODEL=head["OUTPUT_MODEL"],
                PATCHES=patches["OUTPUT_INDEX"], EPOCHS=env("FINETUNE_EPOCHS", defaults["FINETUNE_EPOCHS"]),
                BATCH_SIZE=env("BATCH_SIZE", "4"), SEED=0,
                UNFREEZE=env("UNFREEZE", defaults["UNFREEZE"]),
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
    model_acc, model_miou = float(evaluated["PIXEL_ACCURACY"]), float(evaluated["MIOU"])
    print(f"  evaluation scene: pixel accuracy {model_acc:.3f}, mIoU {model_miou:.3f}, kappa {evaluated.get('KAPPA')}")
    base = baselines(patches["OUTPUT_INDEX"], test_scene["image"], test_scene["scl"])
    lookup, majority = base["lookup"], base["majority"]
    print(f"  same scene, colour lookup (RGB in 32 levels a channel -> most frequent training code): pixel accuracy "
          f"{lookup['pixel_accuracy']:.3f}, mIoU {lookup['miou']:.3f}; majority class: pixel accuracy "
          f"{majority['pixel_accuracy']:.3f}, mIoU {majority['miou']:.3f}")
    beats = model_acc > lookup["pixel_accuracy"] and model_miou > lookup["miou"]
    print("  the model " + ("beats" if beats else "does NOT beat") + " the colour lookup in pixel accuracy and mIoU")
    print(classes_line(out / "metrics.json"))
    print("  seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; total {total:.0f}")
    print(f"  outputs in {out}: open {project.name} in QGIS, report.html in a browser")


if __name__ == "__main__":
    main()
