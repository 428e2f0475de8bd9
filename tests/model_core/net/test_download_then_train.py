"""A Sentinel-2 backbone downloaded from 127.0.0.1, then training starts from it with its normalisation."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core.net import checkpoint, weight_sets
from scl_deeplab.model_core.net.download import download
from scl_deeplab.model_core.training.train import TrainConfig, train
from scl_deeplab.tests.models import one_torch_thread
from scl_deeplab.tests.weight_server import hub_name, serve_weights
from torchvision.models import resnet50


@pytest.fixture(scope="module")
def published() -> tuple[str, bytes, dict[str, torch.Tensor]]:
    """A ResNet-50 in torchgeo's layout with random values: (file name, file bytes, tensors)."""
    torch.manual_seed(7)  # torchvision's own initialisation, so the network stays trainable
    state = {k: v for k, v in resnet50(weights=None).state_dict().items() if not k.startswith("fc.")}
    g = torch.Generator().manual_seed(8)
    for key, value in state.items():  # BatchNorm statistics unlike a fresh model's: equality proves loading
        if key.endswith("running_mean"):
            value.copy_(0.1 * torch.randn(value.shape, generator=g))
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=g) + 0.5)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    return hub_name("resnet50_sentinel2_rgb_moco", data), data, state


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
    from scl_deeplab.model_core.data.synthetic import make_sample_scene

    root = tmp_path_factory.mktemp("scene")
    scene = make_sample_scene(root / "image.tif", root / "scl.tif", size=96, seed=2)
    return make_patches(scene.image, scene.scl, root / "patches", PatchConfig(patch_size_px=32, preview_patches=0)).index


def test_training_starts_from_the_downloaded_backbone(httpserver, published, patches, tmp_path, monkeypatch):
    name, data, state = published
    server = serve_weights(httpserver, {name: data})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ssl4eo = dataclasses.replace(weight_sets.weight_set("ssl4eo-rgb"), url=server.url(name))
    monkeypatch.setattr(weight_sets, "WEIGHT_SETS", tuple(
        ssl4eo if s.name == "ssl4eo-rgb" else s for s in weight_sets.WEIGHT_SETS))

    path = download(ssl4eo)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / name

    config = TrainConfig(stage="head", epochs=1, batch_size=2, pretrained="ssl4eo-rgb", device="cpu",
                         precision="float32")
    with one_torch_thread():
        result = train(patches, config, tmp_path / "head.pt")

    saved = checkpoint.load_checkpoint(result.best_path)
    meta = saved["meta"]
    assert meta["weights_source"]["kind"] == "ssl4eo-rgb" and meta["weights_source"]["file"] == str(path)
    assert meta["input"]["mean"] == [0.0, 0.0, 0.0] and meta["input"]["std"] == [4.0, 4.0, 4.0]
    # The head stage leaves the backbone (BatchNorm statistics included) exactly as the file holds it.
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(saved["state_dict"][f"backbone.{key}"], value), key
    for big in (path, result.best_path, result.last_path):  # 100-170 MB each: none stays in /tmp
        big.unlink()
