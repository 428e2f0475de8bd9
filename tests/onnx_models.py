"""A small model whose classes mean something, with its scene and training patches, for the ONNX tests.

Trained weights cannot be downloaded in tests, so the real DeepLabv3-ResNet50 gets random weights with
its residual branches switched off (each bottleneck's last BatchNorm scaled to 0, as torchvision's
``zero_init_residual`` starts training): a shallow, smooth network like a trained one, not the chaotic
50-layer random map that int8 rounding scrambles. Its last layer is then fitted to the blocks' classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scl_deeplab.tests.models import META, colour_blocks, fit_last_layer

SIDE = 128  # the fit sees the whole scene as one tile; predictions use tiles of this size
PATCH = 64


def write_raster(path: Path, data: np.ndarray) -> Path:
    """A GeoTIFF of (bands, h, w) uint8 on a 10 m grid."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[-1], height=data.shape[-2], count=data.shape[0],
                       dtype="uint8", crs="EPSG:32633", transform=from_origin(500000.0, 5000000.0, 10.0, 10.0)) as dst:
        dst.write(data)
    return path


def fitted_blocks(folder: Path) -> dict[str, object]:
    """Write ``scene.tif``, ``fitted.pt`` and a patches ``index.json`` into ``folder``; returns them and the codes."""
    import torch
    from scl_deeplab.model_core.data.manifest import Manifest, PatchRecord
    from scl_deeplab.model_core.net.checkpoint import save_checkpoint
    from scl_deeplab.model_core.net.model import build_model

    rgb, codes = colour_blocks(SIDE)
    scene = write_raster(folder / "scene.tif", rgb)
    torch.manual_seed(0)
    net = build_model(aux=False)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics of exactly the scene below
            module.reset_running_stats()
        if hasattr(module, "bn3"):
            torch.nn.init.zeros_(module.bn3.weight)
    mean = torch.tensor(META["input"]["mean"]).view(3, 1, 1)
    std = torch.tensor(META["input"]["std"]).view(3, 1, 1)
    x = ((torch.from_numpy(rgb).float() / 255 - mean) / std)[None]
    features: list[torch.Tensor] = []
    hook = net.classifier[-2].register_forward_hook(lambda _m, _i, out: features.append(out))
    with torch.no_grad():
        net.train()
        net(torch.cat([x, x.flip(-1)]))
        net.eval()
        net(x)
    hook.remove()
    target = torch.from_numpy(codes[4::8, 4::8].astype(np.int64) - 1).reshape(-1)
    fit_last_layer(net, features[-1][0].flatten(1).T, target)
    checkpoint = folder / "fitted.pt"
    save_checkpoint(checkpoint, net.state_dict(), META)
    records = []
    for i, (row, col) in enumerate((r, c) for r in (0, PATCH) for c in (0, PATCH)):
        window = (slice(None), slice(row, row + PATCH), slice(col, col + PATCH))
        records.append(PatchRecord(id=str(i), image=write_raster(folder / f"p{i}.tif", rgb[window]),
                                   mask=write_raster(folder / f"m{i}.tif", codes[None][window]), split="train"))
    patches = Manifest(path=folder / "index.json", patch_size=PATCH, dtype="uint8", input_scale=255.0,
                       patches=tuple(records)).save()
    return {"scene": scene, "checkpoint": checkpoint, "patches": patches, "codes": codes}
