"""Miniature Sentinel-2 L2A products and a loopback STAC API, built by the tests themselves.

``make_safe`` writes a .SAFE folder with ESA's folder and file naming, lossless JPEG 2000
bands (GDAL's JP2OpenJPEG driver) and an MTD_MSIL2A.xml of one of three generations:
PSD 14.2 (baseline 02.06: ``L2A_``-prefixed names), PSD 14.5 (02.14: no offset) and
PSD 14.9 (04.00: BOA_ADD_OFFSET per band). ``serve_stac`` publishes items and COGs on
pytest-httpserver (127.0.0.1) with HTTP range requests.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from werkzeug.wrappers import Request, Response

CRS = "EPSG:32632"
ORIGIN = (600000.0, 5100000.0)  # upper-left corner shared by all resolutions, as on real tiles
SIZE_10M = 60  # 10 m pixels; 30 at 20 m, 10 at 60 m
TILE, SENSED = "T32TQM", "20230704T101559"
# band_id -> offset: distinct per band so a mix-up of bands shows.
OFFSETS_0400 = {1: -1000, 2: -1100, 3: -1200}


@dataclass
class Safe:
    """A miniature product and the arrays written into it, by (kind, resolution)."""

    path: Path
    baseline: str
    arrays: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)  # by band name, DN


def product_name(baseline: str) -> str:
    return f"S2B_MSIL2A_{SENSED}_N{baseline.replace('.', '')}_R065_{TILE}_20230704T130000.SAFE"


def write_jp2(path: Path, data: np.ndarray, res: int) -> None:
    """A lossless JPEG 2000 on the tile grid at ``res`` metres."""
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=data.dtype, crs=CRS, transform=from_origin(*ORIGIN, res, res), QUALITY="100", REVERSIBLE="YES",
    ) as dst:
        dst.write(data)


# Where ESA's L2A products hold each further band (issue 18: NIR and SWIR as model input).
NATIVE = {"B01": (20, 60), "B05": (20, 60), "B06": (20, 60), "B07": (20, 60), "B08": (10,), "B8A": (20, 60),
          "B09": (60,), "B11": (20, 60), "B12": (20, 60)}
NIR_SWIR = ("B8A", "B11", "B12")


def make_safe(root: Path, baseline: str = "04.00", *, seed: int = 0, resolutions=(10, 20, 60),
              scl_resolutions=(20, 60), extra_bands: tuple[str, ...] = ()) -> Safe:
    """Write a miniature L2A product under ``root`` and return what it holds.

    ``extra_bands`` (e.g. ``NIR_SWIR``) are written at ESA's resolutions for them (``NATIVE``),
    within ``resolutions``, with an offset of -1000 DN from baseline 04.00 on.
    """
    rng = np.random.default_rng(seed)
    old_psd = baseline < "02.07"
    safe = Safe(root / product_name(baseline), baseline)
    granule = safe.path / "GRANULE" / f"L2A_{TILE}_A033000_{SENSED}" / "IMG_DATA"
    prefix = f"L2A_{TILE}_{SENSED}" if old_psd else f"{TILE}_{SENSED}"
    for res in (10, 20, 60):
        n = SIZE_10M * 10 // res
        kinds = ["B02", "B03", "B04", "TCI"] if res in resolutions else []
        kinds += [b for b in extra_bands if res in NATIVE[b] and res in resolutions]
        kinds += ["SCL"] if res in scl_resolutions else []
        for kind in kinds:
            if kind == "TCI":
                data = rng.integers(0, 256, (3, n, n), dtype=np.uint8)
            elif kind == "SCL":
                data = rng.integers(0, 12, (n, n), dtype=np.uint8)
            else:  # DN: nodata, below the offset (negative reflectance), ordinary, saturating
                data = rng.integers(1, 5000, (n, n), dtype=np.uint16)
                data[0, :3] = (0, 1000, 3500)
                data[1, :3] = (900, 2250, 65535)
            safe.arrays[(kind, res)] = data
            write_jp2(granule / f"R{res}m" / f"{prefix}_{kind}_{res}m.jp2", data, res)
    if baseline >= "04.00":
        safe.offsets = {f"B0{i + 1}": v for i, v in OFFSETS_0400.items()}
        safe.offsets.update({b: -1000 for b in extra_bands})
    (safe.path / "MTD_MSIL2A.xml").write_text(mtd_xml(baseline), encoding="utf-8")
    (safe.path / "manifest.safe").write_text("<xfdu/>", encoding="utf-8")
    return safe


def mtd_xml(baseline: str, *, offsets: bool = True) -> str:
    """MTD_MSIL2A.xml of the generation ``baseline`` belongs to, reduced to what matters here."""
    old_psd = baseline < "02.07"
    pre = "L2A_" if old_psd else ""
    quant_list = "L1C_L2A_Quantification_Values_List" if old_psd else "QUANTIFICATION_VALUES_LIST"
    offset_list = ""
    if baseline >= "04.00" and offsets:
        rows = "".join(
            f'<BOA_ADD_OFFSET band_id="{i}">{OFFSETS_0400.get(i, -1000)}</BOA_ADD_OFFSET>' for i in range(13))
        offset_list = f"<BOA_ADD_OFFSET_VALUES_LIST>{rows}</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{b}"><RESOLUTION>10</RESOLUTION></Spectral_Information>'
        for i, b in enumerate(["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]))
    ns = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="{ns}">
  <n1:General_Info>
    <{pre}Product_Info>
      <PRODUCT_URI{'_2A' if old_psd else ''}>{product_name(baseline)}</PRODUCT_URI{'_2A' if old_psd else ''}>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    </{pre}Product_Info>
    <{pre}Product_Image_Characteristics>
      <{quant_list}>
        <{pre}BOA_QUANTIFICATION_VALUE unit="none">10000</{pre}BOA_QUANTIFICATION_VALUE>
        <{pre}AOT_QUANTIFICATION_VALUE unit="none">1000.0</{pre}AOT_QUANTIFICATION_VALUE>
      </{quant_list}>
      {offset_list}
      <Spectral_Information_List>{spectral}</Spectral_Information_List>
    </{pre}Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""


def zip_safe(safe: Safe) -> Path:
    """The product as a .zip with the .SAFE folder at its top, as Copernicus delivers it."""
    target = safe.path.parent / (safe.path.name.removesuffix(".SAFE") + ".zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(safe.path.rglob("*")):
            zf.write(path, path.relative_to(safe.path.parent).as_posix())
    return target


def expected_tci(dn: np.ndarray, offset: int, quantification: int = 10000) -> np.ndarray:
    """ESA's TCI rule in integer arithmetic, independent of the float code under test."""
    shifted = dn.astype(np.int64) + offset
    out = np.minimum(shifted * 1016 // quantification + 1, 255)
    out[shifted <= 0] = 0
    return out.astype(np.uint8)


# --- a STAC API on 127.0.0.1 ---------------------------------------------------------------


def cog_bytes(data: np.ndarray, res: float, *, nodata: int | None = 0) -> bytes:
    """A Cloud-Optimised GeoTIFF (with averaged overviews) of ``data`` on the tile grid."""
    data = data if data.ndim == 3 else data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, crs=CRS, transform=from_origin(*ORIGIN, res, res), nodata=nodata)
    with MemoryFile() as tmp:
        with tmp.open(**profile) as dst:
            dst.write(data)
        with tmp.open() as src, MemoryFile() as out:
            rasterio.shutil.copy(src, out.name, driver="COG", BLOCKSIZE=16, OVERVIEW_COUNT=2,
                                 OVERVIEW_RESAMPLING="AVERAGE", COMPRESS="DEFLATE")
            return out.read()


@dataclass
class StacSite:
    """What a served catalogue holds and what it was asked."""

    url: str
    items: list[dict]
    arrays: dict[str, dict[str, np.ndarray]]  # item id -> asset key -> array
    requests: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)  # method, path, range, auth
    fail_next: dict[str, int] = field(default_factory=dict)  # path -> number of 503 answers still to give


def range_response(request: Request, body: bytes) -> Response:
    """Answer a GET or HEAD with the byte range asked for (206), or the whole file."""
    found = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
    if not found:
        return Response(body, 200, content_type="image/tiff", headers={"Accept-Ranges": "bytes"})
    start = int(found.group(1))
    end = min(int(found.group(2) or len(body) - 1), len(body) - 1)
    return Response(body[start:end + 1], 206, content_type="image/tiff",
                    headers={"Content-Range": f"bytes {start}-{end}/{len(body)}", "Accept-Ranges": "bytes"})


# Earth Search's NIR and SWIR assets (B8A, B11, B12), all at 20 m.
NIR_SWIR_ASSETS = {"nir08": "B8A", "swir16": "B11", "swir22": "B12"}


def make_item(item_id: str, day: str, cloud: float, *, baseline: str = "04.00", offset_applied: bool = False,
              cdse: bool = False, nir_swir: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """An Earth Search v1-like item and the arrays its assets hold (``serve_stac`` sets the hrefs).

    ``cdse``: asset keys and hrefs as the Copernicus Data Space catalogue gives them
    (``TCI_10m``, ``B04_10m``, ``SCL_20m``; s3:// hrefs with an https alternate).
    """
    rng = np.random.default_rng(abs(hash(item_id)) % 2**32)
    n = SIZE_10M
    arrays = {
        "visual": rng.integers(1, 256, (3, n, n), dtype=np.uint8),
        "red": rng.integers(1, 6000, (n, n), dtype=np.uint16),
        "green": rng.integers(1, 6000, (n, n), dtype=np.uint16),
        "blue": rng.integers(1, 6000, (n, n), dtype=np.uint16),
        "scl": rng.integers(1, 12, (n // 2, n // 2), dtype=np.uint8),
    }
    if nir_swir:
        arrays.update({key: rng.integers(1, 6000, (n // 2, n // 2), dtype=np.uint16) for key in NIR_SWIR_ASSETS})
    scaled = {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1 if baseline >= "04.00" else 0.0}
    assets = {key: {"href": "", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data"]} for key in arrays}
    for key in ("red", "green", "blue", *(NIR_SWIR_ASSETS if nir_swir else ())):
        assets[key]["raster:bands"] = [scaled]
    assets["scl"]["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}]
    if cdse:
        names = {"visual": "TCI_10m", "red": "B04_10m", "green": "B03_10m", "blue": "B02_10m", "scl": "SCL_20m",
                 **{k: f"{b}_20m" for k, b in NIR_SWIR_ASSETS.items()}}
        arrays = {names[k]: v for k, v in arrays.items()}
        assets = {names[k]: dict(v, href="s3://eodata/placeholder", alternate={"https": {"href": ""}})
                  for k, v in assets.items()}
    west, south, east, north = 10.26, 46.0, 10.28, 46.01  # roughly the tile corner (EPSG:32632)
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "sentinel-2-l2a",
        "bbox": [west, south, east, north],
        "geometry": {"type": "Polygon", "coordinates": [
            [[west, south], [east, south], [east, north], [west, north], [west, south]]]},
        "properties": {"datetime": f"{day}T10:15:59Z", "eo:cloud_cover": cloud, "grid:code": "MGRS-32TQM",
                       "proj:epsg": 32632, "s2:processing_baseline": baseline,
                       "earthsearch:boa_offset_applied": offset_applied},
        "links": [], "assets": assets, "stac_extensions": [],
    }
    return item, arrays


def serve_stac(httpserver, prefix: str, items: list[tuple[dict, dict[str, np.ndarray]]], *,
               auth: str | None = None) -> StacSite:
    """Publish a landing page, /search and the items' COGs under /<prefix> on ``httpserver``.

    With ``auth``, every request must carry exactly that Authorization header, or gets HTTP 403.
    """
    base = httpserver.url_for(f"/{prefix}").rstrip("/")
    site = StacSite(base, [i for i, _ in items], {i["id"]: a for i, a in items})
    files = {}
    for item, arrays in items:
        for key, data in arrays.items():
            res = 20.0 if key.lower().startswith("scl") or key in NIR_SWIR_ASSETS or key.endswith("_20m") else 10.0
            files[f"/{prefix}/cogs/{item['id']}/{key}.tif"] = cog_bytes(data, res)
            asset = item["assets"][key]
            where = asset["alternate"]["https"] if "alternate" in asset else asset  # CDSE: s3:// plus https
            where["href"] = f"{base}/cogs/{item['id']}/{key}.tif"
    landing = {
        "type": "Catalog", "id": "loopback", "stac_version": "1.0.0", "description": "test catalogue",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                       "https://api.stacspec.org/v1.0.0/item-search#query"],
        "links": [{"rel": "self", "href": base}, {"rel": "root", "href": base},
                  {"rel": "search", "href": f"{base}/search", "method": "POST", "type": "application/geo+json"},
                  {"rel": "search", "href": f"{base}/search", "method": "GET", "type": "application/geo+json"}],
    }

    def handler(request: Request) -> Response:
        sent = request.headers.get("Authorization")
        site.requests.append((request.method, request.path, request.headers.get("Range"), sent))
        if site.fail_next.get(request.path, 0) > 0:
            site.fail_next[request.path] -= 1
            return Response("busy", 503)
        if auth is not None and sent != auth:
            return Response("forbidden", 403)
        if request.path.rstrip("/") == f"/{prefix}":
            return Response(json.dumps(landing), 200, content_type="application/json")
        if request.path == f"/{prefix}/search":
            limit, cloud = _search_terms(request)
            features = [i for i in site.items if i["properties"]["eo:cloud_cover"] <= cloud][:limit]
            body = {"type": "FeatureCollection", "features": features, "links": []}
            return Response(json.dumps(body), 200, content_type="application/geo+json")
        if request.path in files:
            return range_response(request, files[request.path])
        return Response("not found", 404)

    httpserver.expect_request(re.compile(f"^/{prefix}(/.*)?$")).respond_with_handler(handler)
    return site


def _search_terms(request: Request) -> tuple[int, float]:
    """The limit and the maximum cloud cover a search asked for."""
    if request.method == "POST":
        body = json.loads(request.get_data() or b"{}")
    else:
        body = {k: json.loads(v) if k == "query" else v for k, v in request.args.items()}
    cloud = body.get("query", {}).get("eo:cloud_cover", {}).get("lte", 100.0)
    return int(body.get("limit") or 100), float(cloud)
