"""Learning curves: the figure (loss left; pixel accuracy and mIoU right) and the history as CSV and JSON.

A dashed vertical line marks each epoch where the stage changed (head -> layer4),
as in the seed's curves. The CSV and JSON go beside the PNG: ``curves.png`` ->
``curves.history.csv`` and ``curves.history.json``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import scl
from ..atomic import atomic_file

COLUMNS = (
    "epoch", "stage", "train_loss", "val_loss", "pixel_accuracy", "mean_iou", "kappa", "learning_rate", "seconds"
)


def stage_switches(history: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
    """(epoch, new stage) for each epoch whose stage differs from the one before."""
    return [
        (row["epoch"], row["stage"])
        for before, row in zip(history, history[1:])
        if row.get("stage") != before.get("stage")
    ]


def figure(history: Sequence[dict[str, Any]]) -> Figure:
    """The learning-curve figure of a training history."""
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    loss_ax.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation loss")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    score_ax.plot(epochs, [row["pixel_accuracy"] for row in history], "o-", label="val pixel accuracy")
    score_ax.plot(epochs, [row["mean_iou"] for row in history], "s-", label="val mIoU")
    score_ax.set(xlabel="epoch", ylabel="score", title="Validation accuracy and IoU", ylim=(0, 1))
    stages = history[0]["stage"] if history else ""
    for epoch, stage in stage_switches(history):
        for ax in (loss_ax, score_ax):
            ax.axvline(epoch - 0.5, color="#555555", linestyle="--", linewidth=1)
        score_ax.annotate(stage, (epoch - 0.5, 0.02), rotation=90, fontsize="small", color="#555555", ha="right")
        stages += f" -> {stage}"
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(f"DeepLabv3-ResNet50 on SCL, stages: {stages}", fontsize="medium")
    return fig


def history_rows(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows for the CSV: the main numbers plus one IoU column per SCL code (``iou_4`` ...)."""
    rows = []
    for row in history:
        flat = {k: row.get(k) for k in COLUMNS}
        for cls, value in zip(scl.LEARNED, row.get("iou") or []):
            flat[f"iou_{cls.code}"] = value
        rows.append(flat)
    return rows


def write_curves(history: Sequence[dict[str, Any]], png: Path | str) -> dict[str, Path]:
    """Write the figure to ``png`` and the history beside it; returns the three paths.

    ``curves.png`` gets ``curves.history.csv`` and ``curves.history.json``.
    """
    png = Path(png)
    paths = {name: png.with_name(f"{png.stem}.history.{name}") for name in ("csv", "json")}
    paths["png"] = png
    with atomic_file(paths["png"]) as tmp:
        figure(history).savefig(tmp, format="png", dpi=110)
    rows = history_rows(history)
    fields = list(COLUMNS) + [f"iou_{c.code}" for c in scl.LEARNED]
    with atomic_file(paths["csv"]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_file(paths["json"]) as tmp:
        classes = [{"code": c.code, "name": c.name} for c in scl.LEARNED]
        tmp.write_text(json.dumps({"classes": classes, "history": list(history)}, indent=1), encoding="utf-8")
    return paths
