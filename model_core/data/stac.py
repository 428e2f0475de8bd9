"""Sentinel-2 L2A scenes from a STAC API: search, then read only the windows needed from the COGs.

The search runs through pystac-client; the reading through GDAL's HTTP range requests,
cropped to the extent at the chosen resolution. Each item becomes the same two GeoTIFFs
``safe.prepare_l2a`` writes (8-bit true colour and SCL, in the item's CRS), listed in a
``manifest.json``. Complete items are skipped on a second run; files are written
atomically, so an interrupted run leaves no partial file behind.

Credentials: an ``Authorization`` header for the catalogue comes from the caller (QGIS's
authentication manager) or from ``SCL_DEEPLAB_STAC_TOKEN`` (a bearer token). It is sent to
the catalogue, and to assets only on the catalogue's own domain; it never reaches logs,
the manifest or GDAL's debug output (GDAL reads it from a private header file).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..atomic import atomic_file
from ..errors import CatalogueError, GridError, InputError
from ..progress import SILENT, Progress, SubProgress, check_canceled
from . import l2a_bands
from .safe import (
    OFFSET_BASELINE,
    RESOLUTIONS_M,
    Grid,
    baseline_version,
    crop_window,
    read_nearest,
    tci_from_dn,
    write_scene,
)

EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
CDSE_STAC_URL = "https://stac.dataspace.copernicus.eu/v1"
DEFAULT_COLLECTION = "sentinel-2-l2a"
TOKEN_ENV = "SCL_DEEPLAB_STAC_TOKEN"
MANIFEST = "manifest.json"
TRANSIENT_HTTP = (429, 500, 502, 503, 504)
_REFLECTANCE = re.compile(
    r"^(coastal|red|green|blue|rededge[123]|nir|nir0[89]|swir16|swir22|(B0[1-9]|B1[0-2]|B8A)(_\d+m)?)$"
)
# Earth Search's asset key of each band (CDSE names them B8A_20m and so on).
EARTH_SEARCH_BANDS = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
    "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22",
}
# Asset keys by role, Earth Search's first, then CDSE's ("{res}" is the chosen resolution).
ASSET_KEYS = {
    "visual": ("TCI_{res}m", "visual", "TCI_10m", "TCI_20m", "TCI_60m"),
    "red": ("B04_{res}m", "red", "B04_10m", "B04_20m", "B04_60m"),
    "green": ("B03_{res}m", "green", "B03_10m", "B03_20m", "B03_60m"),
    "blue": ("B02_{res}m", "blue", "B02_10m", "B02_20m", "B02_60m"),
    "scl": ("SCL_{res}m", "scl", "SCL_20m", "SCL_60m"),
}


@dataclass(frozen=True)
class SearchConfig:
    """Where and what to search."""

    extent: tuple[float, float, float, float]  # left, bottom, right, top in ``extent_crs``
    start_date: str  # YYYY-MM-DD
    end_date: str
    extent_crs: str = "EPSG:4326"
    url: str = EARTH_SEARCH_URL
    collection: str = DEFAULT_COLLECTION
    max_cloud_cover: float = 20.0  # percent
    max_items: int = 5


@dataclass(frozen=True)
class DownloadConfig:
    """What to make of each item found."""

    source: Literal["TCI", "BANDS"] = "TCI"
    resolution_m: int = 20
    bands: tuple[str, ...] = ()  # a band list (``l2a_bands``): uint16 reflectance instead of true colour
    retries: int = 4
    backoff_s: float = 2.0  # first wait; doubled after each failure
    rows_per_band: int = 512


@dataclass(frozen=True)
class Asset:
    """One COG of an item and how its DN become reflectance."""

    href: str
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class FoundItem:
    """A search result, reduced to what downloading needs."""

    id: str
    datetime: str
    tile: str
    cloud_cover: float | None
    baseline: str
    assets: dict[str, Asset]  # by role: visual, red, green, blue, scl


@dataclass(frozen=True)
class DownloadResult:
    """What ``download`` wrote."""

    folder: Path
    manifest: Path
    items: list[dict[str, Any]]
    downloaded: int
    skipped: int


def wgs84_bbox(extent: tuple[float, float, float, float], crs: str) -> tuple[float, float, float, float]:
    """``extent`` in ``crs`` as a longitude/latitude bounding box."""
    left, bottom, right, top = extent
    if right <= left or top <= bottom:
        raise InputError(f"The extent {extent} is empty. Draw an extent over the area you want.")
    west, south, east, north = transform_bounds(crs, "EPSG:4326", left, bottom, right, top, densify_pts=21)
    return west, south, east, north


def request_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers for the catalogue: the caller's, else a bearer token from ``SCL_DEEPLAB_STAC_TOKEN``."""
    if headers:
        return dict(headers)
    token = os.environ.get(TOKEN_ENV, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def search(
    config: SearchConfig,
    *,
    headers: dict[str, str] | None = None,
    retries: int = 4,
    backoff_s: float = 1.0,
    progress: Progress = SILENT,
) -> list[FoundItem]:
    """Search the catalogue; raise ``CatalogueError`` or ``InputError`` (no items) with what to do next.

    Busy answers (HTTP 429, 5xx) and failed connections are retried ``retries`` times, waiting
    ``backoff_s`` seconds, then twice as long each time.
    """
    from pystac.errors import STACError, STACTypeError
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    if config.start_date > config.end_date:
        raise InputError(f"The start date {config.start_date} is after the end date {config.end_date}.")
    bbox = wgs84_bbox(config.extent, config.extent_crs)
    retry = Retry(total=retries, backoff_factor=backoff_s, status_forcelist=TRANSIENT_HTTP, allowed_methods=None,
                  raise_on_status=False)
    sent = request_headers(headers)
    io = StacApiIO(headers=sent, timeout=60, max_retries=retry)
    where = f"{config.collection} at {_public(config.url)}"
    try:
        with _kept_out_of_logs(_secrets(sent)):
            client = Client.open(config.url, stac_io=io)
            kwargs: dict[str, Any] = {}
            if client.conforms_to(ConformanceClasses.QUERY):
                kwargs["query"] = {"eo:cloud_cover": {"lte": config.max_cloud_cover}}
            elif client.conforms_to(ConformanceClasses.FILTER):
                kwargs.update(filter_lang="cql2-json", filter={
                    "op": "<=", "args": [{"property": "eo:cloud_cover"}, config.max_cloud_cover]})
            found = client.search(collections=[config.collection], bbox=bbox, max_items=config.max_items,
                                  datetime=f"{config.start_date}/{config.end_date}", **kwargs)
            items = list(found.items())
    except APIError as exc:
        raise _catalogue_error(exc, where, _secrets(sent)) from exc
    except (OSError, ValueError, KeyError, STACError, STACTypeError) as exc:  # unreachable, or not STAC
        raise CatalogueError(
            f"Cannot search {where}: {_no_secrets(str(exc), _secrets(sent))[:300]}. Check the internet connection "
            f"and the catalogue URL (Earth Search: {EARTH_SEARCH_URL}; Copernicus Data Space: {CDSE_STAC_URL})."
        ) from exc
    results = [_found(item) for item in items]
    results = [r for r in results if r.cloud_cover is None or r.cloud_cover <= config.max_cloud_cover]
    if not results:
        raise InputError(
            f"No items found in {where} between {config.start_date} and {config.end_date} with cloud cover "
            f"<= {config.max_cloud_cover:g} % over lon/lat {', '.join(f'{v:.3f}' for v in bbox)}. "
            "Widen the dates, raise the maximum cloud cover or check the extent."
        )
    progress.info(f"Found {len(results)} item(s) in {where}:")
    for r in results:
        cloud = "?" if r.cloud_cover is None else f"{r.cloud_cover:.1f} %"
        progress.info(f"  {r.datetime[:10]}  tile {r.tile}  cloud {cloud}  {r.id}")
    return results


def download(
    search_config: SearchConfig,
    config: DownloadConfig,
    folder: Path | str,
    *,
    headers: dict[str, str] | None = None,
    progress: Progress = SILENT,
) -> DownloadResult:
    """Search, then write true colour and SCL of each item into ``folder`` with a manifest; resumes."""
    if config.resolution_m not in RESOLUTIONS_M:
        raise InputError(f"Resolution {config.resolution_m} m is not one of Sentinel-2's {RESOLUTIONS_M} m.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.part.*"):  # left by a run that was killed outright
        stale.unlink(missing_ok=True)
    headers = request_headers(headers)
    items = search(search_config, headers=headers, retries=config.retries, backoff_s=config.backoff_s,
                   progress=progress)
    entries = _read_manifest(folder)
    downloaded = skipped = 0
    failures: list[str] = []
    for n, item in enumerate(items):
        check_canceled(progress)
        sub = SubProgress(progress, 100.0 * n / len(items), 100.0 * (n + 1) / len(items))
        try:
            entry = _download_item(item, search_config, config, folder, headers, sub)
        except _ItemFailed as exc:
            progress.warn(str(exc))
            failures.append(str(exc))
            continue
        if entry is None:
            continue
        if entry.pop("skipped"):
            skipped += 1
        else:
            downloaded += 1
        entries[entry["image"]] = entry
        _write_manifest(folder, search_config, config, entries)
    if failures and not downloaded + skipped:
        raise CatalogueError(f"No item could be read. {failures[-1]}")
    manifest = _write_manifest(folder, search_config, config, entries)
    ids = {i.id for i in items}
    done = [e for e in entries.values()
            if e["id"] in ids and (e["source"], e["resolution_m"]) == (_source(config), config.resolution_m)]
    progress.info(f"{downloaded} item(s) downloaded, {skipped} already complete, into {folder}.")
    return DownloadResult(folder, manifest, done, downloaded, skipped)


class _ItemFailed(Exception):
    """One item cannot be read; the others may still be."""


def _download_item(
    item: FoundItem, search_config: SearchConfig, config: DownloadConfig, folder: Path,
    headers: dict[str, str], progress: Progress,
) -> dict[str, Any] | None:
    res = config.resolution_m
    roles = config.bands or (("visual",) if config.source == "TCI" else ("red", "green", "blue"))
    picked = {role: _pick(item, role, res) for role in (*roles, "scl")}
    missing = [role for role, asset in picked.items() if asset is None]
    if missing:
        if config.bands:  # counted as a failure: when no item has the bands, the run fails saying so
            has = [b for b in EARTH_SEARCH_BANDS if _pick(item, b, res) is not None]
            raise _ItemFailed(f"Skipping {item.id}: it has no {', '.join(missing)} asset (its bands: "
                              f"{', '.join(has)}). Choose bands from those.")
        progress.warn(f"Skipping {item.id}: it has no {', '.join(missing)} asset.")
        return None
    item = dataclasses.replace(item, assets=picked)
    image_path = folder / f"{item.id}_{_label(config)}_{res}m.tif"
    scl_path = folder / f"{item.id}_SCL_{res}m.tif"
    delay = config.backoff_s
    for attempt in range(config.retries + 1):
        try:
            with _gdal_env(item, search_config.url, headers, config):
                return _write_item(item, roles, search_config, config, image_path, scl_path, progress)
        except GridError as exc:
            progress.warn(f"Skipping {item.id}: {exc}")
            return None
        except rasterio.errors.RasterioIOError as exc:
            message = _no_secrets(str(exc), _secrets(headers))
            code = _http_status(message)
            if code in (401, 403):
                raise CatalogueError(
                    f"Reading {item.id} was refused (HTTP {code}). The assets need credentials: choose an "
                    f"authentication configuration, or set {TOKEN_ENV} for qgis_process."
                ) from exc
            if attempt == config.retries or (code is not None and code not in TRANSIENT_HTTP):
                raise _ItemFailed(f"Skipping {item.id}: cannot read it ({message[:300]}).") from exc
            progress.warn(f"Reading {item.id} failed ({message[:120]}); retrying in {delay:g} s.")
            time.sleep(delay)
            delay *= 2
    return None


def _write_item(
    item: FoundItem, roles: tuple[str, ...], search_config: SearchConfig, config: DownloadConfig,
    image_path: Path, scl_path: Path, progress: Progress,
) -> dict[str, Any]:
    res = config.resolution_m
    with ExitStack() as stack:
        first = stack.enter_context(rasterio.open(item.assets[roles[0]].href))
        scl_src = stack.enter_context(rasterio.open(item.assets["scl"].href))
        image_res, scl_res = first.res[0], scl_src.res[0]
        origin = first.transform
        grid = Grid(first.crs, Affine(res, 0, origin.c, 0, -res, origin.f),
                    int(np.ceil(first.width * image_res / res)), int(np.ceil(first.height * image_res / res)))
        window = crop_window(grid, search_config.extent, search_config.extent_crs)
        entry = _entry(item, config, grid, window, image_path, scl_path)
        if _complete(image_path, scl_path, entry):
            progress.info(f"{item.id}: already complete, skipped.")
            return dict(entry, skipped=True)

        images = [stack.enter_context(_open_for(item.assets[r].href, res)) for r in roles]
        if config.bands:
            parts = [_reflectance_reader(item, band, src, res) for band, src in zip(roles, images)]

        def band_reader(src: rasterio.io.DatasetReader, role: str) -> Callable[[Window], np.ndarray]:
            terms = _dn_terms(item.assets[role])
            return lambda win: tci_from_dn(_read_resampled(src, (1,), win, res), *terms)

        if config.bands:
            pass
        elif config.source == "TCI":
            parts = [lambda win: np.round(_read_resampled(images[0], (1, 2, 3), win, res)).astype(np.uint8)]
        else:
            parts = [band_reader(src, role) for role, src in zip(roles, images)]

        def read_scl(win: Window) -> np.ndarray:
            return read_nearest(scl_src, win, res, scl_res).astype(np.uint8)

        progress.info(f"{item.id}: reading {window.width} x {window.height} px at {res} m.")
        write_scene(image_path, scl_path, grid, window, parts, read_scl,
                    rows_per_band=config.rows_per_band, progress=progress, descriptions=config.bands)
    return dict(entry, skipped=False)


def _source(config: DownloadConfig) -> str:
    """What the manifest records as an item's source: TCI, BANDS, or the band list joined by commas."""
    return ",".join(config.bands) if config.bands else config.source


def _label(config: DownloadConfig) -> str:
    """The image file's kind: TCI, BANDS (true colour from reflectance) or BANDS-<names> for a band list."""
    return f"BANDS-{''.join(config.bands)}" if config.bands else config.source


def _reflectance_reader(
    item: FoundItem, band: str, src: rasterio.io.DatasetReader, res: int
) -> Callable[[Window], np.ndarray]:
    """A reader of uint16 reflectance x 10000 (``l2a_bands``): finer pixels averaged, coarser ones repeated.

    Raises:
        InputError: the band's pixels are more than twice the chosen resolution (a 60 m band at 10 or 20 m).
    """
    if src.res[0] > res * l2a_bands.MAX_UPSAMPLING + 1e-6:
        raise InputError(
            f"{item.id} holds {band} at {src.res[0]:g} m; at {res} m each of its pixels would be copied "
            f"{round(src.res[0] / res) ** 2} times. Choose RESOLUTION {round(src.res[0])}, or leave {band} out."
        )
    terms = _dn_terms(item.assets[band])
    return lambda win: l2a_bands.reflectance_from_dn(_read_resampled(src, (1,), win, res), *terms)


@contextmanager
def _open_for(href: str, res: float) -> Iterator[rasterio.io.DatasetReader]:
    """Open an image asset at the coarsest overview that divides the way to ``res`` (fewer bytes to fetch)."""
    with rasterio.open(href) as src:
        factor = res / src.res[0]
        levels = src.overviews(1)
        usable = [f for f in levels if f <= factor and abs(factor / f - round(factor / f)) < 1e-6]
        if not usable:
            yield src
            return
        level = levels.index(max(usable))
    with rasterio.open(href, overview_level=level) as src:
        yield src


def _read_resampled(src: rasterio.io.DatasetReader, indexes: tuple[int, ...], win: Window, res: float) -> np.ndarray:
    """Bands of ``src`` on a window of the ``res`` grid: the mean of valid (non-zero) pixels of each block."""
    factor = res / src.res[0]
    if factor < 1:
        return np.stack([read_nearest(src, win, res, src.res[0], index=i) for i in indexes]).astype(np.float64)
    k = int(round(factor))
    r0, c0, h, w = int(win.row_off) * k, int(win.col_off) * k, int(win.height) * k, int(win.width) * k
    data = np.zeros((len(indexes), h, w), np.float64)
    rows, cols = max(0, min(h, src.height - r0)), max(0, min(w, src.width - c0))
    if rows and cols:
        data[:, :rows, :cols] = src.read(indexes, window=Window(c0, r0, cols, rows))
    if k == 1:
        return data
    blocks = data.reshape(len(indexes), h // k, k, w // k, k)
    count = (blocks != 0).sum(axis=(2, 4))
    return np.where(count > 0, blocks.sum(axis=(2, 4)) / np.maximum(count, 1), 0.0)


def _dn_terms(asset: Asset) -> tuple[float, float]:
    """Offset (in DN) and quantification of ``reflectance = DN * scale + offset``, exact where they are whole."""
    offset_dn, quantification = asset.offset / asset.scale, 1.0 / asset.scale
    offset_dn, quantification = (round(v) if abs(v - round(v)) < 1e-6 else v for v in (offset_dn, quantification))
    return offset_dn, quantification


@contextmanager
def _gdal_env(item: FoundItem, catalogue_url: str, headers: dict[str, str], config: DownloadConfig) -> Iterator[None]:
    """GDAL settings for reading COGs over HTTP: no directory listings, retries with back-off."""
    options = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
        "GDAL_HTTP_MAX_RETRY": str(config.retries),
        "GDAL_HTTP_RETRY_DELAY": f"{config.backoff_s:g}",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_TIMEOUT": "60",
        "VSI_CACHE": "TRUE",
    }
    with ExitStack() as stack:
        if headers and all(_same_domain(a.href, catalogue_url) for a in item.assets.values()):
            options["GDAL_HTTP_HEADER_FILE"] = str(stack.enter_context(_header_file(headers)))
        stack.enter_context(rasterio.Env(**options))
        yield


@contextmanager
def _header_file(headers: dict[str, str]) -> Iterator[Path]:
    """A private file of ``Key: value`` lines, so the secret stays out of GDAL's option logs."""
    fd, name = tempfile.mkstemp(prefix="scl-deeplab-headers-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{key}: {value}\n" for key, value in headers.items())
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _same_domain(href: str, catalogue_url: str) -> bool:
    host, home = urlsplit(href).hostname or "", urlsplit(catalogue_url).hostname or ""
    if host == home:
        return True
    labels = home.split(".")
    is_name = len(labels) >= 3 and not home.replace(".", "").isdigit()
    return is_name and host.endswith("." + ".".join(labels[1:]))


def _found(item: Any) -> FoundItem:
    """A pystac Item as a ``FoundItem``, with each asset's reflectance scale and offset."""
    props = item.properties
    tile = str(props.get("grid:code", "")).removeprefix("MGRS-") or str(props.get("s2:mgrs_tile", "")) or "".join(
        str(props.get(k, "")) for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")) or "?"
    baseline = str(props.get("s2:processing_baseline", ""))
    found = re.search(r"_N(\d\d)(\d\d)_", str(props.get("s2:product_uri", "")))
    if not baseline and found:
        baseline = f"{found.group(1)}.{found.group(2)}"
    # Earth Search removed the offset from the DN of such items (its raster:bands may still say -0.1).
    offset_applied = bool(props.get("earthsearch:boa_offset_applied", False))
    default_offset = -0.1 if baseline_version(baseline) >= OFFSET_BASELINE else 0.0
    assets = {}
    for key, asset in item.assets.items():
        href = asset.href
        alternate = asset.extra_fields.get("alternate", {}).get("https", {}).get("href")
        if href.startswith("s3://") and alternate:
            href = alternate
        band = (asset.extra_fields.get("raster:bands") or [{}])[0]
        if _REFLECTANCE.match(key):  # without metadata: DN = reflectance x 10000 (+ 1000 from 04.00)
            scale, offset = float(band.get("scale", 1e-4)), float(band.get("offset", default_offset))
            assets[key] = Asset(href, scale, 0.0 if offset_applied else offset)
        else:
            assets[key] = Asset(href)
    when = props.get("datetime") or (item.datetime.isoformat() if item.datetime else "")
    cloud = props.get("eo:cloud_cover")
    return FoundItem(item.id, str(when), tile, None if cloud is None else float(cloud), baseline or "unknown", assets)


def _pick(item: FoundItem, role: str, res: int) -> Asset | None:
    keys = ASSET_KEYS.get(role) or (
        role + "_{res}m", EARTH_SEARCH_BANDS.get(role, role), f"{role}_10m", f"{role}_20m", f"{role}_60m"
    )
    for key in keys:
        asset = item.assets.get(key.format(res=res))
        if asset is not None:
            return asset
    return None


def _entry(
    item: FoundItem, config: DownloadConfig, grid: Grid, window: Window, image: Path, scl: Path
) -> dict[str, Any]:
    return {
        "id": item.id, "datetime": item.datetime, "tile": item.tile, "cloud_cover": item.cloud_cover,
        "processing_baseline": item.baseline, "source": _source(config), "resolution_m": config.resolution_m,
        "crs": grid.crs.to_string(), "width": int(window.width), "height": int(window.height),
        "bounds": list(rasterio.windows.bounds(window, grid.transform)),
        "image": image.name, "scl": scl.name,
    }


def _complete(image: Path, scl: Path, entry: dict[str, Any]) -> bool:
    """Both files exist and hold the planned grid (a finished earlier run)."""
    if not (image.exists() and scl.exists()):
        return False
    try:
        with rasterio.open(image) as a, rasterio.open(scl) as b:
            bands = 3 if entry["source"] in ("TCI", "BANDS") else len(entry["source"].split(","))
            same = a.count == bands and a.shape == b.shape == (entry["height"], entry["width"])
            return same and np.allclose(a.bounds, entry["bounds"]) and a.crs.to_string() == entry["crs"]
    except rasterio.errors.RasterioIOError:
        return False


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        items = json.loads(path.read_text(encoding="utf-8")).get("items", [])
    except (ValueError, AttributeError):
        return {}
    return {e["image"]: e for e in items if isinstance(e, dict) and (folder / e.get("image", "")).is_file()}


def _write_manifest(folder: Path, search_config: SearchConfig, config: DownloadConfig,
                    entries: dict[str, dict[str, Any]]) -> Path:
    manifest = {
        "format": "scl-deeplab-l2a-download", "version": 1,
        "stac_url": _public(search_config.url), "collection": search_config.collection,
        "search": {"bbox_wgs84": list(wgs84_bbox(search_config.extent, search_config.extent_crs)),
                   "start_date": search_config.start_date, "end_date": search_config.end_date,
                   "max_cloud_cover": search_config.max_cloud_cover, "max_items": search_config.max_items},
        "source": _source(config), "resolution_m": config.resolution_m,
        "items": sorted(entries.values(), key=lambda e: (e["datetime"], e["id"])),
    }
    path = folder / MANIFEST
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return path


def _catalogue_error(exc: Exception, where: str, secrets: tuple[str, ...] = ()) -> CatalogueError:
    code = getattr(exc, "status_code", None)
    detail = _no_secrets(str(exc), secrets)[:300]
    if code in (401, 403):
        return CatalogueError(
            f"{where} refused the request (HTTP {code}). It needs credentials: choose an authentication "
            f"configuration, or set {TOKEN_ENV} for qgis_process.")
    if code is None:
        return CatalogueError(
            f"Cannot reach {where}: {detail}. Check the internet connection and the catalogue URL "
            f"(Earth Search: {EARTH_SEARCH_URL}; Copernicus Data Space: {CDSE_STAC_URL}).")
    if code == 404:
        return CatalogueError(
            f"{where} answered HTTP 404 (not found). Check the catalogue URL and the collection name.")
    if code in TRANSIENT_HTTP:
        return CatalogueError(f"{where} answered HTTP {code}: {detail}. Try again later.")
    return CatalogueError(
        f"{where} refused the request as invalid (HTTP {code}): {detail}. Check the extent, the dates, the "
        "collection name and the maximum cloud cover.")


def _public(url: str) -> str:
    """A URL without user information or query string (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "" if not parts.port else f"{parts.hostname}:{parts.port}",
                       parts.path, "", ""))


def _secrets(headers: Mapping[str, str] | None) -> tuple[str, ...]:
    """The header values a message must never show: whole, and their credential after "Bearer" or "Basic"."""
    found: list[str] = []
    for name, value in (headers or {}).items():
        found.append(str(value).strip())
        found.extend(str(value).split()[1:])
    return tuple(v for v in found if len(v) >= 4)


# pystac-client logs every request with its headers at DEBUG, the Authorization header's token included.
STAC_REQUEST_LOGGER = "pystac_client.stac_api_io"


class _Redacting(logging.Filter):
    """Takes ``secrets`` out of every record of the logger it is added to (``_no_secrets``)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _no_secrets(record.getMessage(), self.secrets), None
        return True


@contextmanager
def _kept_out_of_logs(secrets: tuple[str, ...]) -> Iterator[None]:
    """While inside, pystac-client's request log shows no credential (a user may log at DEBUG to a shared file)."""
    logger = logging.getLogger(STAC_REQUEST_LOGGER)
    redacting = _Redacting(secrets)
    logger.addFilter(redacting)
    try:
        yield
    finally:
        logger.removeFilter(redacting)


def _no_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without query strings, credentials after "Bearer"/"Basic", and the given secrets wherever they are."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = re.sub(r"(https?://[^\s?'\"]+)\?[^\s'\"]*", r"\1", text)
    return re.sub(r"(Bearer|Basic)\s+\S+", r"\1 ***", text)


def _http_status(message: str) -> int | None:
    found = re.search(r"(?:HTTP|response code)\D{0,20}(\d{3})", message)
    return int(found.group(1)) if found else None
