"""PROCESSES above 1: the training algorithms start torchrun themselves, report its progress, and cancel it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.tests.recording import RecordingFeedback
from scl_deeplab.tests.sample_patches import sample_patches


def job_processes() -> list[str]:
    """Command lines of running model_core job processes (torchrun's and its ranks')."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(args).decode(errors="replace")
        if "scl_deeplab_job_" in text:
            found.append(text)
    return found


@pytest.fixture(scope="module")
def patches(provider, tmp_path_factory) -> Path:
    """samplescene then makepatches: 32 px patches, enough for 2 processes with batches of 2."""
    made = sample_patches(tmp_path_factory.mktemp("processes"), 128, 4)
    return Path(made["OUTPUT_INDEX"])


def params(patches: Path, folder: Path, **extra) -> dict:
    return {"PATCHES": str(patches), "EPOCHS": 1, "BATCH_SIZE": 2, "LEARNING_RATE": 0.001, "PRETRAINED": "none",
            "DEVICE": "cpu", "SEED": 1, "PROCESSES": 2, "OUTPUT_MODEL": str(folder / "head.pt"),
            "OUTPUT_CURVES": str(folder / "head.png"), **extra}


def test_two_processes_train_through_processing_run(provider, patches, tmp_path, monkeypatch):
    import processing

    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "in-process")
    feedback = RecordingFeedback()
    result = processing.run("scldeeplab:trainhead", params(patches, tmp_path, EPOCHS=2), feedback=feedback)
    meta = checkpoint.load_checkpoint(result["OUTPUT_MODEL"])["meta"]
    assert [s["processes"] for s in meta["stages"]] == [2]
    assert [row["epoch"] for row in meta["history"]] == [1, 2]
    assert Path(result["OUTPUT_CURVES"]).is_file() and Path(result["LAST_MODEL"]).is_file()
    assert result["BEST_EPOCH"] in (1, 2) and 0 <= result["MIOU"] <= 1
    # rank 0 alone reports: one line per epoch, progress rising to the end
    assert sum("Epoch 1 (head" in line for line in feedback.infos) == 1
    assert feedback.percents == sorted(feedback.percents) and feedback.percents[-1] == 100
    assert any("torchrun with 2 processes" in line for line in feedback.infos)
    # and fine-tuning continues it with one process
    tuned = processing.run("scldeeplab:finetunelayer4", {
        "MODEL": result["OUTPUT_MODEL"], "PATCHES": str(patches), "EPOCHS": 1, "BATCH_SIZE": 2,
        "LEARNING_RATE": 0.0001, "DEVICE": "cpu", "PROCESSES": 1, "OUTPUT_MODEL": str(tmp_path / "l4.pt"),
        "OUTPUT_CURVES": str(tmp_path / "l4.png")})
    stages = checkpoint.load_checkpoint(tuned["OUTPUT_MODEL"])["meta"]["stages"]
    assert [(s["stage"], s["processes"]) for s in stages] == [("head", 2), ("layer4", 1)]


def test_cancel_ends_every_rank_and_keeps_the_complete_epoch(provider, patches, tmp_path, monkeypatch):
    import processing

    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "in-process")
    feedback = RecordingFeedback()
    seen: list[list[str]] = []

    def cancel_after_the_first_epoch(line: str) -> None:
        if "Epoch 1 (" in line and not feedback.isCanceled():
            seen.append(job_processes())
            feedback.cancel()

    feedback.pushInfo = lambda line: (RecordingFeedback.pushInfo(feedback, line), cancel_after_the_first_epoch(line))
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run("scldeeplab:trainhead", params(patches, tmp_path, EPOCHS=50), feedback=feedback)
    # torchrun and both ranks were running when cancel came, and none is left
    assert len(seen) == 1 and len(seen[0]) >= 3, seen
    deadline = time.monotonic() + 10
    while job_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job_processes() == []
    # the checkpoint of the complete epoch is intact; nothing half-written beside it
    meta = checkpoint.load_checkpoint(tmp_path / "head.pt")["meta"]
    assert meta["history"][0]["epoch"] == 1 and len(meta["history"]) < 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.last.pt", "head.pt"]


def test_too_many_processes_for_the_patches_say_what_to_do(provider, patches, tmp_path, monkeypatch):
    import processing

    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "in-process")
    train_count = sum(p["split"] == "train" for p in json.loads(patches.read_text())["patches"])
    with pytest.raises(QgsProcessingException, match=f"{train_count} training patches cannot feed 64 processes.*at most"):
        processing.run("scldeeplab:trainhead", params(patches, tmp_path, PROCESSES=64))
    assert not (tmp_path / "head.pt").exists()
