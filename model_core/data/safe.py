"""Sentinel-2 L2A products (a ``.SAFE`` folder or its ``.zip``) as true colour and SCL GeoTIFFs.

The product is read in place: a ``.zip`` through GDAL's ``/vsizip/``, never unpacked.
Both outputs are written on one grid, in the product's CRS, in row bands, so a full
tile needs only a few bands of rows in memory.

True colour comes either from the product's own 8-bit ``TCI`` or from the ``B04``,
``B03`` and ``B02`` reflectance bands, brought to the same 8 bits as TCI::

    reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE
    value       = 0                                   if reflectance <= 0 (and no data, DN 0)
                  min(255, floor(reflectance * 1016) + 1)  otherwise      (1016 = 254 / 0.25)

that is reflectance 0-0.25 spread over 1-255, brighter saturating. BOA_ADD_OFFSET
is -1000 from processing baseline 04.00 on and absent (0) before; both terms are
read from the product's ``MTD_MSIL2A.xml``. On a real baseline 04.00 product this
reproduces ESA's TCI exactly, so a model trained on one works on the other.

SCL exists at 20 and 60 m; other resolutions take the nearest SCL pixel on the
aligned tile grids. SCL JPEG 2000 files are only ever read at full resolution:
their wavelet overviews invent codes 12-14.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from .. import scl
from ..atomic import atomic_file
from ..errors import GridError, InputError
from ..progress import SILENT, Progress, check_canceled
from ..styles import write_style
from . import l2a_bands, rasters
from .raster_write import checked_raster

RESOLUTIONS_M = (10, 20, 60)
RGB_BANDS = ("B04", "B03", "B02")
# Order of band_id / bandId in MTD_MSIL2A.xml.
MTD_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
TCI_GAIN = 254 / 0.25  # ESA's TCI: reflectance 0-0.25 onto 1-255
OFFSET_BASELINE = (4, 0)  # BOA_ADD_OFFSET exists from processing baseline 04.00 on
_IMAGE = re.compile(r"^GRANULE/([^/]+)/IMG_DATA/R(10|20|60)m/[^/]*_(B0[1-9]|B1[0-2]|B8A|TCI|SCL)_\2m\.jp2$")


@dataclass(frozen=True)
class Radiometry:
    """How a product's digital numbers become reflectance."""

    baseline: str
    quantification: float
    offsets: dict[str, float] = field(default_factory=dict)  # in DN, by band name

    def offset(self, band: str) -> float:
        """BOA_ADD_OFFSET of ``band`` in DN (0 before baseline 04.00)."""
        return self.offsets.get(band, 0.0)


@dataclass(frozen=True)
class L2AProduct:
    """An L2A product found on disk: its radiometry and its image files as GDAL paths."""

    source: Path
    name: str
    radiometry: Radiometry
    files: dict[tuple[str, int], str]  # (band name|TCI|SCL, resolution_m) -> GDAL path

    def bands(self) -> list[str]:
        """The spectral bands the product holds at any resolution, in Sentinel-2 order."""
        return [b for b in MTD_BANDS if any(k == b for k, _ in self.files)]

    def resolutions(self, kind: str) -> list[int]:
        """The resolutions (m) at which the product holds ``kind``."""
        return sorted(res for k, res in self.files if k == kind)


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, transform and size."""

    crs: rasterio.crs.CRS
    transform: Affine
    width: int
    height: int


@dataclass(frozen=True)
class PrepareConfig:
    """What ``prepare_l2a`` makes of a product."""

    source: Literal["TCI", "BANDS"] = "TCI"
    resolution_m: int = 20
    extent: tuple[float, float, float, float] | None = None  # left, bottom, right, top
    bands: tuple[str, ...] = ()  # a band list (``l2a_bands``): uint16 reflectance instead of true colour
    extent_crs: str | None = None  # CRS of ``extent`` (WKT, EPSG:...); None: the product's
    rows_per_band: int = 512


@dataclass(frozen=True)
class PreparedScene:
    """The two GeoTIFFs ``prepare_l2a`` wrote and what they hold."""

    image: Path
    scl: Path
    width: int
    height: int
    crs: str
    resolution_m: int
    source: str
    product: str
    baseline: str


def open_product(path: Path | str) -> L2AProduct:
    """Find an L2A product's metadata and bands in a ``.SAFE`` folder, its ``.zip`` or its MTD_MSIL2A.xml."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise InputError(f"{path} does not exist. Choose an L2A product: a .SAFE folder or its .zip.")
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                mtd = _find_mtd(names, path)
                xml = zf.read(mtd)
        except zipfile.BadZipFile as exc:
            raise InputError(f"{path} is not a readable zip file ({exc}). Download the product again.") from exc
        prefix = f"/vsizip/{path.as_posix()}"
    else:
        folder = path.parent if path.is_file() else path
        candidates = [*folder.glob("MTD_MSIL*.xml"), *folder.glob("*/MTD_MSIL*.xml")]
        mtd = _find_mtd([p.relative_to(folder).as_posix() for p in candidates], path)
        safe = (folder / mtd).parent
        names = [p.relative_to(folder).as_posix() for p in safe.rglob("*") if p.is_file()]
        xml = (folder / mtd).read_bytes()
        prefix = folder.as_posix()
    root = mtd.rpartition("/")[0]
    name = root.rpartition("/")[2] or (path.parent.name if path.is_file() else path.name)
    inner = [n[len(root) + 1 :] if root else n for n in names if not root or n.startswith(root + "/")]
    files = _image_files(inner, f"{prefix}/{root}".rstrip("/"))
    return L2AProduct(path, name, parse_metadata(xml, product_name=name), files)


def _find_mtd(names: list[str], path: Path) -> str:
    found = sorted((n for n in names if n.rpartition("/")[2] == "MTD_MSIL2A.xml"), key=lambda n: n.count("/"))
    if found and found[0].count("/") <= 1:
        return found[0]
    if any(n.endswith("MTD_MSIL1C.xml") for n in names):
        raise InputError(
            f"{path} is a Level-1C product, which has no Scene Classification Layer. "
            "Use the Level-2A product (MSIL2A) of the same date, or process this one with Sen2Cor."
        )
    raise InputError(
        f"No MTD_MSIL2A.xml in {path}. Choose a Sentinel-2 Level-2A product as ESA delivers it: "
        "the S2?_MSIL2A_*.SAFE folder or its .zip (products since late 2016)."
    )


def _image_files(names: list[str], prefix: str) -> dict[tuple[str, int], str]:
    files: dict[tuple[str, int], str] = {}
    granules = set()
    for name in names:
        match = _IMAGE.match(name)
        if match:
            granules.add(match.group(1))
            files[(match.group(3), int(match.group(2)))] = f"{prefix}/{name}"
    if len(granules) > 1:
        raise InputError(
            f"The product holds {len(granules)} granules ({', '.join(sorted(granules))}); "
            "only single-tile products (since late 2016) are supported. Choose a product of one tile."
        )
    return files


def parse_metadata(xml: bytes, *, product_name: str = "") -> Radiometry:
    """Read processing baseline, BOA_QUANTIFICATION_VALUE and BOA_ADD_OFFSET from MTD_MSIL2A.xml.

    Element names of older products (``L2A_BOA_QUANTIFICATION_VALUE``, baselines 02.0x)
    are accepted too.
    """
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise InputError(
            f"MTD_MSIL2A.xml of {product_name} is not valid XML ({exc}). Download the product again."
        ) from exc
    baseline, quantification, offsets, band_names = "", None, {}, {}
    for element in root.iter():
        tag = element.tag.rpartition("}")[2]
        text = (element.text or "").strip()
        if tag == "PROCESSING_BASELINE" and text:
            baseline = text
        elif tag.endswith("BOA_QUANTIFICATION_VALUE") and text:
            quantification = float(text)
        elif tag == "BOA_ADD_OFFSET" and text:
            offsets[int(element.get("band_id", "-1"))] = float(text)
        elif tag == "Spectral_Information" and element.get("physicalBand"):
            band = element.get("physicalBand", "")
            band_names[int(element.get("bandId", "-1"))] = f"B{band[1:].zfill(2)}" if band[1:].isdigit() else band
    if not baseline:
        found = re.search(r"_N(\d\d)(\d\d)_", product_name)
        baseline = f"{found.group(1)}.{found.group(2)}" if found else "unknown"
    if not quantification:
        raise InputError(
            f"MTD_MSIL2A.xml of {product_name} has no BOA_QUANTIFICATION_VALUE. "
            "Download the complete product again, or use SOURCE TCI."
        )
    by_band = {band_names.get(i, MTD_BANDS[i] if 0 <= i < len(MTD_BANDS) else str(i)): v for i, v in offsets.items()}
    if baseline_version(baseline) >= OFFSET_BASELINE and not all(b in by_band for b in RGB_BANDS):
        raise InputError(
            f"{product_name} has processing baseline {baseline} but its MTD_MSIL2A.xml lists no BOA_ADD_OFFSET "
            "for B02-B04; reflectance would be wrong. Download the complete product again, or use SOURCE TCI."
        )
    return Radiometry(baseline, quantification, by_band)


def baseline_version(baseline: str) -> tuple[int, int]:
    """A processing baseline such as "04.00" as (4, 0); (0, 0) when unknown."""
    parts = re.findall(r"\d+", baseline)
    return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) if parts else (0, 0)


def tci_from_dn(dn: np.ndarray, offset_dn: float, quantification: float) -> np.ndarray:
    """8-bit true colour from reflectance DN the way ESA makes TCI (see the module docstring)."""
    # (DN + offset) * 1016 is exact in float64 and the one division is correctly rounded,
    # so floor() gives what integer arithmetic gives. In place: row bands stay small.
    x = dn.astype(np.float64)
    x += offset_dn
    x *= TCI_GAIN
    x /= quantification
    dark = x <= 0
    np.floor(x, out=x)
    x += 1.0
    np.minimum(x, 255.0, out=x)
    out = x.astype(np.uint8)
    out[dark] = 0
    return out


def nearest_indices(start: int, stop: int, target_res: float, source_res: float) -> np.ndarray:
    """Index of the source pixel whose area holds each target pixel's centre (grids share their origin)."""
    return np.floor((np.arange(start, stop) + 0.5) * (target_res / source_res)).astype(np.int64)


def read_nearest(
    src: rasterio.io.DatasetReader, window: Window, target_res: float, source_res: float, *, index: int = 1
) -> np.ndarray:
    """Band ``index`` of ``src`` on a window of the target grid: nearest neighbour, full resolution reads only."""
    if target_res == source_res:
        return src.read(index, window=window)
    rows = nearest_indices(int(window.row_off), int(window.row_off + window.height), target_res, source_res)
    cols = nearest_indices(int(window.col_off), int(window.col_off + window.width), target_res, source_res)
    rows_ok, cols_ok = rows < src.height, cols < src.width
    out = np.zeros((rows.size, cols.size), dtype=src.dtypes[0])
    if not rows_ok.any() or not cols_ok.any():
        return out
    r0, r1, c0, c1 = rows[0], rows[rows_ok][-1] + 1, cols[0], cols[cols_ok][-1] + 1
    block = src.read(index, window=Window(c0, r0, c1 - c0, r1 - r0))
    out[np.ix_(rows_ok, cols_ok)] = block[np.ix_(rows[rows_ok] - r0, cols[cols_ok] - c0)]
    return out


def crop_window(grid: Grid, extent: tuple[float, float, float, float] | None, extent_crs: str | None) -> Window:
    """The window of ``grid`` covering ``extent`` (whole pixels, outwards), or the whole grid."""
    if extent is None:
        return Window(0, 0, grid.width, grid.height)
    left, bottom, right, top = extent
    if extent_crs and rasterio.crs.CRS.from_user_input(extent_crs) != grid.crs:
        left, bottom, right, top = transform_bounds(extent_crs, grid.crs, left, bottom, right, top, densify_pts=21)
    inverse = ~grid.transform
    cols, rows = zip(*(inverse * xy for xy in ((left, top), (right, bottom))))
    c0, c1 = max(0, int(np.floor(min(cols)))), min(grid.width, int(np.ceil(max(cols))))
    r0, r1 = max(0, int(np.floor(min(rows)))), min(grid.height, int(np.ceil(max(rows))))
    if c1 <= c0 or r1 <= r0:
        raise GridError(
            f"The extent ({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f} in the product's CRS) does not overlap "
            "the product. Draw the extent over the tile, or leave it empty for the whole tile."
        )
    return Window(c0, r0, c1 - c0, r1 - r0)


def write_scene(
    image_path: Path,
    scl_path: Path,
    grid: Grid,
    window: Window,
    image_parts: Sequence[Callable[[Window], np.ndarray]],
    read_scl: Callable[[Window], np.ndarray],
    *,
    rows_per_band: int = 512,
    progress: Progress = SILENT,
    descriptions: Sequence[str] = (),
) -> Grid:
    """Write ``window`` of ``grid`` as a 3-band uint8 GeoTIFF and an SCL GeoTIFF, in bands of rows.

    With ``descriptions`` (band names) the image instead has one uint16 band per name, each
    part giving one band, described by its name.

    Each of ``image_parts`` returns the next output band(s) as a (n, h, w) uint8 array for a
    window of ``grid`` (one part of 3 bands for TCI, three parts of one for BANDS); ``read_scl``
    returns (h, w) codes. Sources are read one after the other, not interleaved: JPEG 2000 files
    inside a zip are slow to revisit once another member was read. Nothing is left behind on
    failure or cancel; the SCL gets a ``.qml`` sidecar.
    """
    out = Grid(grid.crs, window_transform(window, grid.transform), int(window.width), int(window.height))
    scl_profile = rasters.label_profile(
        {"width": out.width, "height": out.height, "crs": out.crs, "transform": out.transform}
    )
    count = len(descriptions) or 3
    if descriptions:
        image_profile = dict(scl_profile, count=count, dtype="uint16", nodata=0, interleave="band")
    else:
        image_profile = dict(scl_profile, count=3, nodata=0, photometric="RGB", interleave="band")
    with ExitStack() as stack:
        image_tmp = stack.enter_context(atomic_file(image_path))
        scl_tmp = stack.enter_context(atomic_file(scl_path))
        image = stack.enter_context(checked_raster(image_tmp, image_path, **image_profile))
        labels = stack.enter_context(checked_raster(scl_tmp, scl_path, **scl_profile))
        labels.write_colormap(1, scl.colormap())
        for i, name in enumerate(descriptions):
            image.set_band_description(i + 1, name)
        for source, target in _row_bands(window, rows_per_band, progress, 1, len(image_parts) + 1):
            codes = read_scl(source)
            rasters.check_scl_codes(codes, f"SCL rows {target.row_off}-{target.row_off + target.height}")
            labels.write(codes, 1, window=target)
        band = 1
        for n, part in enumerate(image_parts, start=2):
            for source, target in _row_bands(window, rows_per_band, progress, n, len(image_parts) + 1):
                values = part(source)
                image.write(values, list(range(band, band + len(values))), window=target)
            band += len(values)
        if band != count + 1:
            raise ValueError(f"The image parts gave {band - 1} bands instead of {count}.")
    write_style(scl_path)
    return out


def _row_bands(
    window: Window, rows_per_band: int, progress: Progress, step: int, steps: int
) -> Iterator[tuple[Window, Window]]:
    """(source, target) windows of successive row bands; progress over pass ``step`` of ``steps``; cancel."""
    height, width = int(window.height), int(window.width)
    for row in range(0, height, rows_per_band):
        check_canceled(progress)
        rows = min(rows_per_band, height - row)
        yield Window(window.col_off, window.row_off + row, width, rows), Window(0, row, width, rows)
        progress.set_progress(100.0 * (step - 1 + (row + rows) / height) / steps)


def prepare_l2a(
    product_path: Path | str,
    image_path: Path | str,
    scl_path: Path | str,
    config: PrepareConfig = PrepareConfig(),
    *,
    progress: Progress = SILENT,
) -> PreparedScene:
    """Turn an L2A product into a true-colour GeoTIFF and its SCL on the same grid."""
    if config.resolution_m not in RESOLUTIONS_M:
        raise InputError(f"Resolution {config.resolution_m} m is not one of Sentinel-2's {RESOLUTIONS_M} m.")
    product = open_product(product_path)
    res = config.resolution_m
    if config.bands:
        return _prepare_bands(product, Path(image_path), Path(scl_path), config, progress)
    kinds = ("TCI",) if config.source == "TCI" else RGB_BANDS
    for kind in kinds:
        if (kind, res) not in product.files:
            have = product.resolutions(kind)
            hint = f"it has {kind} at {', '.join(f'{r} m' for r in have)}: choose that resolution" if have else (
                "the product is incomplete: download it again")
            raise InputError(f"{product.name} has no {kind} at {res} m; {hint}.")
    scl_res = _scl_resolution(product, res)
    if scl_res > res:
        progress.warn(f"{product.name} has no SCL finer than {scl_res} m; it is repeated onto the {res} m grid.")
    progress.info(
        f"{product.name}: processing baseline {product.radiometry.baseline}, "
        f"quantification {product.radiometry.quantification:g}, "
        f"offsets {', '.join(f'{b} {product.radiometry.offset(b):g}' for b in RGB_BANDS)}; "
        f"{config.source} at {res} m, SCL from {scl_res} m."
    )
    with ExitStack() as stack:
        sources = [stack.enter_context(rasters.open_raster(product.files[(k, res)])) for k in kinds]
        scl_src = stack.enter_context(rasters.open_raster(product.files[("SCL", scl_res)]))
        grid = Grid(sources[0].crs, sources[0].transform, sources[0].width, sources[0].height)
        for src in [*sources[1:], scl_src]:
            _check_aligned(src, grid, product.name)
        window = crop_window(grid, config.extent, config.extent_crs)

        def band_reader(src: rasterio.io.DatasetReader, band: str) -> Callable[[Window], np.ndarray]:
            offset, quantification = product.radiometry.offset(band), product.radiometry.quantification
            return lambda win: tci_from_dn(src.read((1,), window=win), offset, quantification)

        if config.source == "TCI":
            parts = [lambda win: sources[0].read((1, 2, 3), window=win)]
        else:
            parts = [band_reader(src, band) for band, src in zip(RGB_BANDS, sources)]

        def read_scl(win: Window) -> np.ndarray:
            return read_nearest(scl_src, win, res, scl_res).astype(np.uint8)

        out = write_scene(Path(image_path), Path(scl_path), grid, window, parts, read_scl,
                          rows_per_band=config.rows_per_band, progress=progress)
    return PreparedScene(Path(image_path), Path(scl_path), out.width, out.height, out.crs.to_string(), res,
                         config.source, product.name, product.radiometry.baseline)


def _prepare_bands(
    product: L2AProduct, image_path: Path, scl_path: Path, config: PrepareConfig, progress: Progress
) -> PreparedScene:
    """``prepare_l2a`` with a band list: one uint16 reflectance x 10000 band per name (``l2a_bands``)."""
    res = config.resolution_m
    names = list(product.bands())
    from_res = {
        band: l2a_bands.source_resolution(band, res, product.resolutions(band), product.name, names)
        for band in config.bands
    }
    on_grid = [k for k in product.files if k[1] == res]  # every file at one resolution shares the tile grid
    if not on_grid:
        raise InputError(f"{product.name} has no band at {res} m to take the grid from; download it again.")
    scl_res = _scl_resolution(product, res)
    if scl_res > res:
        progress.warn(f"{product.name} has no SCL finer than {scl_res} m; it is repeated onto the {res} m grid.")
    how = {b: "as is" if r == res else (f"averaged from {r} m" if r < res else f"repeated from {r} m (nearest)")
           for b, r in from_res.items()}
    progress.info(
        f"{product.name}: processing baseline {product.radiometry.baseline}, quantification "
        f"{product.radiometry.quantification:g}; reflectance x 10000 at {res} m of "
        + ", ".join(f"{b} (offset {product.radiometry.offset(b):g}, {how[b]})" for b in config.bands)
        + f"; SCL from {scl_res} m."
    )
    quantification = product.radiometry.quantification
    if baseline_version(product.radiometry.baseline) >= OFFSET_BASELINE:
        lacking = [b for b in config.bands if b not in product.radiometry.offsets]
        if lacking:
            raise InputError(
                f"{product.name} has processing baseline {product.radiometry.baseline} but its MTD_MSIL2A.xml lists "
                f"no BOA_ADD_OFFSET for {', '.join(lacking)}; reflectance would be wrong. Download the complete "
                "product again, or leave those bands out."
            )
    with ExitStack() as stack:
        first = stack.enter_context(rasters.open_raster(product.files[on_grid[0]]))
        grid = Grid(first.crs, first.transform, first.width, first.height)
        sources = {b: stack.enter_context(rasters.open_raster(product.files[(b, r)])) for b, r in from_res.items()}
        scl_src = stack.enter_context(rasters.open_raster(product.files[("SCL", scl_res)]))
        for src in [*sources.values(), scl_src]:
            _check_aligned(src, grid, product.name)
        window = crop_window(grid, config.extent, config.extent_crs)

        def reader(band: str) -> Callable[[Window], np.ndarray]:
            src, source_res, offset = sources[band], from_res[band], product.radiometry.offset(band)
            if source_res < res:
                return lambda win: l2a_bands.averaged(src, win, res // source_res, offset, quantification)
            return lambda win: l2a_bands.reflectance_from_dn(
                read_nearest(src, win, res, source_res)[None], offset, quantification)

        def read_scl(win: Window) -> np.ndarray:
            return read_nearest(scl_src, win, res, scl_res).astype(np.uint8)

        out = write_scene(image_path, scl_path, grid, window, [reader(b) for b in config.bands], read_scl,
                          rows_per_band=config.rows_per_band, progress=progress, descriptions=config.bands)
    return PreparedScene(image_path, scl_path, out.width, out.height, out.crs.to_string(), res,
                         ",".join(config.bands), product.name, product.radiometry.baseline)


def _scl_resolution(product: L2AProduct, res: int) -> int:
    have = product.resolutions("SCL")
    if not have:
        raise InputError(f"{product.name} has no SCL (R20m or R60m). Download the complete L2A product again.")
    finer_or_equal = [r for r in have if r <= res]
    return max(finer_or_equal) if finer_or_equal else min(have)


def _check_aligned(src: rasterio.io.DatasetReader, grid: Grid, name: str) -> None:
    """Sentinel-2 resolutions share the tile's corner; refuse files that do not."""
    t, g = src.transform, grid.transform
    if src.crs != grid.crs or abs(t.c - g.c) > 1e-6 or abs(t.f - g.f) > 1e-6:
        raise GridError(f"{src.name} is not on the tile grid of {name}; the product looks damaged. Download it again.")
