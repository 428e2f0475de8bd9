"""The weight sets PRETRAINED offers: their sources, normalisation, and every published key layout mapped fully."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core.cli import main as cli
from scl_deeplab.model_core.errors import BandCountError, WeightsNotFoundError
from scl_deeplab.model_core.net import weight_sets, weights
from scl_deeplab.model_core.net.model import build_model
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50
from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights


@pytest.fixture(autouse=True)
def no_weight_files_left(tmp_path):
    """Each ResNet-50 file is 100 MB: none stays behind in pytest's kept temporary folders."""
    yield
    for path in tmp_path.rglob("*.pth"):
        path.unlink()


@pytest.fixture()
def folders(tmp_path, monkeypatch) -> Path:
    """Empty TORCH_HOME and plugin weights folder; returns torch hub's checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weight_sets.WEIGHTS_DIR_ENV, str(tmp_path / "plugin-weights"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", weight_sets.BASE_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_torchvision_sets_are_torchvisions_own_files():
    assert weight_sets.weight_set("coco").url == DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.url
    imagenet = weight_sets.weight_set("imagenet")
    assert imagenet.url == ResNet50_Weights.IMAGENET1K_V1.url
    assert imagenet.other_names == (ResNet50_Weights.IMAGENET1K_V2.url.rsplit("/", 1)[-1],)


def test_every_set_can_be_verified_and_has_a_licence():
    for weights_set in weight_sets.WEIGHT_SETS:
        assert weights_set.hash_prefix or weights_set.sha256, weights_set.name
        assert weights_set.url.startswith("https://") and weights_set.licence
    assert weight_sets.CHOICES == ("auto", "coco", "satlas-rgb", "ssl4eo-rgb", "ssl4eo-ms", "imagenet", "none")


def test_folders_follow_torch_home_and_the_plugin_setting(folders, tmp_path):
    assert weight_sets.hub_checkpoints() == folders == Path(torch.hub.get_dir()) / "checkpoints"
    assert weight_sets.plugin_weights_dir() == tmp_path / "plugin-weights"
    assert weight_sets.weight_set("satlas-rgb").path == folders / "sentinel2_resnet50_si_rgb-45fc6972.pth"


def test_normalisation_on_the_plugins_true_colour():
    # Satlas: TCI / 255 is the plugin's input itself.
    satlas = weight_sets.weight_set("satlas-rgb")
    assert (satlas.mean, satlas.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    # SSL4EO-S12: reflectance (DN / 10000); the plugin's 0-1 is reflectance / 0.25, so x / 4 is reflectance.
    ssl4eo = weight_sets.weight_set("ssl4eo-rgb")
    unit = torch.tensor([0.5])  # reflectance 0.125, DN 1250
    assert ((unit - ssl4eo.mean[0]) / ssl4eo.std[0]).item() == pytest.approx(1250 / 10000)
    assert weight_sets.weight_set("coco").mean == weights.IMAGENET_MEAN


def _scrambled(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v.clone() for k, v in state.items()}


def _resnet_state(bands: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    net = resnet50(weights=None)
    net.conv1 = nn.Conv2d(bands, 64, 7, 2, 3, bias=False)
    return _scrambled(net.state_dict(), seed)


def _torchgeo_layout(bands: int) -> dict[str, torch.Tensor]:
    """torchgeo's files: a timm ResNet-50 (torchvision's names), its classifier dropped."""
    return {k: v for k, v in _resnet_state(bands).items() if not k.startswith("fc.")}


def _satlas_layout(prefix: str) -> dict[str, torch.Tensor]:
    """SatlasPretrain's own files: the ResNet wrapped as ``<prefix>resnet.``, beside an FPN and a head."""
    state = {f"{prefix}resnet.{k}": v for k, v in _resnet_state().items()}
    state["intermediates.0.fpn.inner_blocks.0.0.weight"] = torch.rand(128, 256, 1, 1)
    state["heads.0.layers.0.0.weight"] = torch.rand(128, 128, 3, 3)
    return state


def _deeplab(bands: int) -> nn.Module:
    net = build_model(aux=True)
    net.backbone.conv1 = nn.Conv2d(bands, 64, 7, 2, 3, bias=False)
    return net


@pytest.mark.parametrize("layout, bands", [
    ("torchgeo ssl4eo-rgb / satlas-rgb", 3),
    ("torchgeo ssl4eo-ms", 13),
    ("satlaspretrain backbone.backbone.resnet.", 3),
    ("satlaspretrain backbone.resnet.", 3),
])
def test_every_backbone_tensor_of_each_layout_is_assigned(tmp_path, layout, bands):
    if layout.startswith("torchgeo"):
        state = _torchgeo_layout(bands)
    else:
        state = _satlas_layout(layout.split()[1])
    torch.save(state, tmp_path / "published.pth")
    net = _deeplab(bands)

    left, meta = weights.load_into(net, tmp_path / "published.pth")

    own = net.state_dict()
    backbone = [k for k in own if k.startswith("backbone.")]
    mapped = weights.deeplab_keys(state)
    assert set(mapped) == set(backbone)  # nothing of the backbone missing, nothing extra
    for key in backbone:
        assert torch.equal(own[key], mapped[key]), key
    assert left and all(k.startswith(("classifier.", "aux_classifier.")) for k in left) and meta is None


def test_multispectral_weights_are_refused_for_true_colour(folders, tmp_path):
    with pytest.raises(BandCountError, match="expects 13 Sentinel-2 bands.*choose satlas-rgb or ssl4eo-rgb"):
        weights.resolve("ssl4eo-ms")
    torch.save(_torchgeo_layout(13), tmp_path / "ms.pth")
    with pytest.raises(BandCountError, match="take 13 input bands; this model reads 3"):
        weights.initialise(build_model(), "none", weights_file=tmp_path / "ms.pth")


def test_a_missing_set_fails_at_once_naming_the_download(folders):
    with pytest.raises(WeightsNotFoundError) as caught:
        weights.resolve("satlas-rgb")
    message = str(caught.value)
    assert "scldeeplab:downloadweights NAME=satlas-rgb" in message
    assert "model_core weights download satlas-rgb" in message
    assert str(folders) in message and "sentinel2_resnet50_si_rgb-45fc6972.pth" in message
    assert weight_sets.weight_set("satlas-rgb").url in message
    assert not folders.exists()


def test_auto_prefers_coco_then_sentinel2_true_colour_then_imagenet(folders):
    folders.mkdir(parents=True)
    for name in ("imagenet", "ssl4eo-rgb", "satlas-rgb", "coco"):
        (folders / weight_sets.weight_set(name).file_name).write_bytes(b"x")
        assert weights.resolve("auto")[0] == name
    assert weight_sets.best_on_disk().name == "coco"
    assert set(weight_sets.on_disk()) == {"imagenet", "ssl4eo-rgb", "satlas-rgb", "coco"}


def test_a_published_file_given_as_weights_file_keeps_its_normalisation(folders, tmp_path):
    path = tmp_path / weight_sets.weight_set("ssl4eo-rgb").file_name
    torch.save(_torchgeo_layout(3), path)
    source = weights.initialise(build_model(), "none", weights_file=path)
    assert source.kind == "file" and source.std == (4.0, 4.0, 4.0)


def test_cli_lists_every_set_and_what_is_on_disk(folders, capsys):
    folders.mkdir(parents=True)
    (folders / weight_sets.weight_set("satlas-rgb").file_name).write_bytes(b"x")
    assert cli.main(["weights", "list"]) == 0
    records = json.loads(capsys.readouterr().out)["weights"]
    assert [r["name"] for r in records] == list(weight_sets.NAMES)
    by_name = {r["name"]: r for r in records}
    assert by_name["satlas-rgb"]["on_disk"] == os.fspath(folders / "sentinel2_resnet50_si_rgb-45fc6972.pth")
    assert by_name["coco"]["on_disk"] is None and by_name["ssl4eo-ms"]["bands"] == 13
    assert by_name["satlas-rgb"]["licence"].startswith("ODC-BY")


def test_cli_download_reports_offline_without_a_traceback(folders, caplog):
    code = cli.main(["weights", "download", "coco", "--base-url", f"http://127.0.0.1:{free_port()}/mirror"])
    assert code == 1
    assert "cannot reach 127.0.0.1" in caplog.text and "deeplabv3_resnet50_coco-cd0a2569.pth" in caplog.text
    assert "Traceback" not in caplog.text


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_multispectral_weights_serve_patches_of_their_own_thirteen_bands(folders):
    """Issue 18: ssl4eo-ms is accepted for 13-band patches and loads into a 13-band model as it is."""
    ms = weight_sets.weight_set("ssl4eo-ms")
    ms.folder.mkdir(parents=True, exist_ok=True)
    torch.save(_torchgeo_layout(13), ms.path)
    assert weights.resolve("ssl4eo-ms", bands=13) == ("ssl4eo-ms", ms.path)
    with pytest.raises(BandCountError, match="expects 13 Sentinel-2 bands.*these patches have 6"):
        weights.resolve("ssl4eo-ms", bands=6)
    net = _deeplab(13)
    source = weights.load_weights(net, "ssl4eo-ms", ms.path)
    assert source.kind == "ssl4eo-ms" and net.backbone.conv1.weight.shape[1] == 13
