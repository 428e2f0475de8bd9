"""Checkpoints: round trip through load_model, validation of bad files, atomic writes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.errors import CheckpointError
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.net.model import build_model

SPEC = checkpoint.ModelInput.rgb("uint8", 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INPUT_META = checkpoint.input_to_meta(SPEC)
SMALL_STATE = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


@pytest.fixture(scope="module")
def deeplab() -> torch.nn.Module:
    torch.manual_seed(3)
    return build_model(aux=True).eval()


def test_round_trip_through_load_model(deeplab, tmp_path):
    path = tmp_path / "model.pt"
    history = [{"epoch": 1, "stage": "head", "mean_iou": 0.25, "iou": [0.5] + [None] * 10}]
    checkpoint.save_checkpoint(path, deeplab.state_dict(), {**INPUT_META, "patch_size": 64, "history": history})

    model, meta = checkpoint.load_model(path, "cpu")

    assert not model.training
    assert model.aux_classifier is None  # prediction leaves the auxiliary head out
    own = deeplab.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, own[key]), key
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x)["out"], deeplab(x)["out"])
        assert model(x)["out"].shape == (2, scl.NUM_CLASSES, 32, 32)
    assert meta["input"] == INPUT_META["input"] and checkpoint.input_from_meta(meta) == SPEC
    assert meta["patch_size"] == 64
    assert meta["history"] == history
    assert meta["architecture"] == "deeplabv3_resnet50"
    assert [c["code"] for c in meta["classes"]] == list(range(1, 12))
    assert meta["classes"][3]["name"] == "Vegetation"
    assert meta["versions"]["torch"] == str(torch.__version__)


def test_payload_opens_with_weights_only(tmp_path):
    path = tmp_path / "small.pt"
    checkpoint.save_checkpoint(path, SMALL_STATE, {**INPUT_META, "score": torch.tensor(0.5).numpy()})
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == "scl-deeplab-checkpoint"
    assert payload["version"] == checkpoint.VERSION
    assert torch.equal(payload["state_dict"]["w"], SMALL_STATE["w"])
    assert payload["meta"]["score"] == 0.5  # numpy scalar stored as a plain float


def test_last_path_sits_beside_the_best():
    assert checkpoint.last_path(Path("/a/b/model.pt")) == Path("/a/b/model.last.pt")
    assert checkpoint.last_path("run.v2.pt") == Path("run.v2.last.pt")


def _write_raw(path: Path, payload) -> Path:
    torch.save(payload, path)
    return path


def test_rejects_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load_checkpoint(tmp_path / "nope.pt")


def test_rejects_a_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not weights", encoding="utf-8")
    with pytest.raises(CheckpointError, match="is not an SCL DeepLab checkpoint"):
        checkpoint.load_checkpoint(path)


def test_rejects_a_plain_state_dict(tmp_path):
    path = _write_raw(tmp_path / "plain.pth", SMALL_STATE)
    with pytest.raises(CheckpointError, match="not an SCL DeepLab checkpoint.*WEIGHTS_FILE"):
        checkpoint.load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_rejects_a_pickle_with_code(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "x": _Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="is not an SCL DeepLab checkpoint"):
        checkpoint.load_checkpoint(path)


def test_refusing_a_pickle_with_code_gives_no_advice_to_switch_the_protection_off(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(CheckpointError, match=r"holds code or Python objects that are not tensors \(print\) and "
                                              r"will not be loaded") as caught:
        checkpoint.load_checkpoint(path)
    assert "weights_only" not in str(caught.value) and "False" not in str(caught.value)


def test_rejects_a_newer_format(tmp_path):
    payload = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION + 1, "state_dict": SMALL_STATE, "meta": {}}
    path = _write_raw(tmp_path / "future.pt", payload)
    with pytest.raises(CheckpointError, match=r"format 2, newer than this plugin reads \(1\)\. Update"):
        checkpoint.load_checkpoint(path)


def test_rejects_another_class_table(tmp_path):
    classes = [{"code": c, "name": f"class {c}"} for c in (1, 2, 3)]
    payload = {
        "format": checkpoint.FORMAT,
        "version": 1,
        "state_dict": SMALL_STATE,
        "meta": {"classes": classes, "architecture": "deeplabv3_resnet50"},
    }
    path = _write_raw(tmp_path / "three.pt", payload)
    with pytest.raises(CheckpointError, match=r"trained for 3 classes .*expects 11 \(SCL codes 1-11\)\. Retrain"):
        checkpoint.load_checkpoint(path)


def test_rejects_another_architecture(tmp_path):
    meta = {"classes": checkpoint.class_table(), "architecture": "unet"}
    path = _write_raw(tmp_path / "unet.pt", {"format": checkpoint.FORMAT, "version": 1, "state_dict": {}, "meta": meta})
    with pytest.raises(CheckpointError, match="holds a unet network"):
        checkpoint.load_checkpoint(path)


def test_load_model_rejects_weights_of_another_shape(tmp_path):
    path = tmp_path / "small.pt"
    checkpoint.save_checkpoint(path, SMALL_STATE, INPUT_META)
    with pytest.raises(CheckpointError, match="do not fit DeepLabv3-ResNet50 with 11 classes"):
        checkpoint.load_model(path)


def test_failing_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    checkpoint.save_checkpoint(path, SMALL_STATE, {**INPUT_META, "epoch": 1})
    before = path.read_bytes()

    def half_write(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")  # save_checkpoint hands torch an open file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", half_write)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_checkpoint(path, {"w": torch.zeros(2, 3)}, {**INPUT_META, "epoch": 2})
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert checkpoint.load_checkpoint(path)["meta"]["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left behind


def test_metadata_that_is_not_plain_is_refused_before_writing(tmp_path):
    path = tmp_path / "model.pt"
    with pytest.raises(TypeError, match=r"meta\.when is a object"):
        checkpoint.save_checkpoint(path, SMALL_STATE, {"when": object()})
    assert not path.exists()


def test_input_record_has_the_documented_fields_and_reads_back():
    assert INPUT_META == {"input": {
        "bands": 3, "band_order": ["red", "green", "blue"], "dtype": "uint8", "scale": 255.0,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    assert checkpoint.input_from_meta(INPUT_META) == SPEC
    assert SPEC.describe() == "3 bands (red, green, blue) of type uint8"


@pytest.mark.parametrize("change,match", [
    ({"input": None}, "does not say which input"),
    ({"input": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}}, "does not say which input"),
    ({"input": {**INPUT_META["input"], "std": [0.2, 0.0, 0.2]}}, "malformed"),
    ({"input": {**INPUT_META["input"], "mean": [0.5, 0.5]}}, "malformed"),
])
def test_incomplete_or_malformed_input_record_is_refused(change, match):
    with pytest.raises(CheckpointError, match=f"^model.pt.*{match}"):
        checkpoint.input_from_meta({**INPUT_META, **change}, "model.pt")
