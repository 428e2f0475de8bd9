"""Typed values across the process boundary: each config and result survives JSON with to_dict/from_dict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.model_core.prediction.config import PredictConfig, PredictResult
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.model_core.training.config import TrainConfig, TrainResult


def through_json(data: dict) -> dict:
    """What the other process reads."""
    return json.loads(json.dumps(data))


def test_predict_config_comes_back_with_tuples_and_its_tiling():
    config = PredictConfig(tiling=TilingConfig(256, 32), batch_size=3, device="cuda:1", precision="float32",
                           bands=(3, 2, 1), extent=(10.5, 20.0, 30.0, 40.25), fast=True)
    plain = through_json(config.to_dict())
    assert plain["tiling"] == {"tile_size_px": 256, "overlap_px": 32} and plain["bands"] == [3, 2, 1]
    back = PredictConfig.from_dict(plain)
    assert back == config
    assert back.bands == (3, 2, 1) and back.extent == (10.5, 20.0, 30.0, 40.25)
    assert back.tiling == TilingConfig(256, 32)


def test_missing_fields_take_their_defaults():
    assert PredictConfig.from_dict({}) == PredictConfig()
    assert PredictConfig.from_dict({"bands": None, "extent": None}).bands is None
    assert TrainConfig.from_dict({"stage": "layer4"}) == TrainConfig(stage="layer4")


def test_an_unknown_field_names_the_version_mismatch():
    with pytest.raises(InputError, match="TrainConfig has no field tile_size.*same SCL DeepLab version"):
        TrainConfig.from_dict({"tile_size": 512})


def test_train_config_round_trip():
    config = TrainConfig(stage="full", epochs=3, batch_size=2, learning_rate=5e-5, backbone_lr_factor=0.1,
                         class_weights=True, pretrained="none", weights_file="/tmp/w.pt", device="cpu", seed=7,
                         workers=2)
    assert TrainConfig.from_dict(through_json(config.to_dict())) == config


def test_predict_result_paths_come_back_as_paths():
    result = PredictResult(Path("/data/out.tif"), None, 96, 80, 4, 1.25, "cpu")
    back = PredictResult.from_dict(through_json(result.to_dict()))
    assert back == result and isinstance(back.output, Path) and back.confidence is None


def test_train_result_has_one_spelling_and_a_summary_without_the_bulk():
    history = [{"epoch": 1, "stage": "head", "mean_iou": 0.5, "iou": [0.5, None]}]
    result = TrainResult(Path("/m/model.pt"), Path("/m/model.last.pt"), 1, 0.75, 0.5, history,
                         {"input": {"mean": [0.1, 0.2, 0.3]}}, Path("/m/curves.png"), Path("/m/curves.history.csv"))
    back = TrainResult.from_dict(through_json(result.to_dict()))
    assert back == result and back.history == history and isinstance(back.curves, Path)
    assert result.summary() == {"best_path": "/m/model.pt", "last_path": "/m/model.last.pt", "best_epoch": 1,
                                "pixel_accuracy": 0.75, "mean_iou": 0.5, "curves": "/m/curves.png",
                                "history_csv": "/m/curves.history.csv"}
