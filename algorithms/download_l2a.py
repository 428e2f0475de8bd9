"""``scldeeplab:downloadl2a``: Sentinel-2 L2A scenes from a STAC API, cropped to an extent."""

from __future__ import annotations

from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterAuthConfig,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QDate, QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest

from ..model_core.data.l2a_bands import parse_band_list
from ..model_core.data.stac import (
    CDSE_STAC_URL,
    DEFAULT_COLLECTION,
    EARTH_SEARCH_URL,
    TOKEN_ENV,
    DownloadConfig,
    SearchConfig,
    download,
)
from ..model_core.errors import InputError
from .base import FeedbackProgress, SclAlgorithm, core_errors_as_processing_exceptions
from .prepare_l2a import RESOLUTIONS, SOURCES


class DownloadL2A(SclAlgorithm):
    """Searches a STAC catalogue and fetches only the pixels of the extent."""

    STAC_URL, COLLECTION, AUTH_CONFIG = "STAC_URL", "COLLECTION", "AUTH_CONFIG"
    EXTENT, START_DATE, END_DATE = "EXTENT", "START_DATE", "END_DATE"
    MAX_CLOUD_COVER, MAX_ITEMS, SOURCE, RESOLUTION = "MAX_CLOUD_COVER", "MAX_ITEMS", "SOURCE", "RESOLUTION"
    BAND_LIST = "BAND_LIST"
    OUTPUT_FOLDER, OUTPUT_MANIFEST, ITEM_COUNT = "OUTPUT_FOLDER", "OUTPUT_MANIFEST", "ITEM_COUNT"
    GROUP = "data"
    HELP = (
        "Searches a STAC catalogue for Sentinel-2 Level-2A scenes over an extent and writes, for each item "
        "found, a true-colour GeoTIFF (3 bands, 8 bit) and its Scene Classification Layer (SCL), cropped "
        "to the extent, in the item's CRS: the same two rasters as Prepare a Sentinel-2 L2A product.\n\n"
        f"Catalogue: Earth Search ({EARTH_SEARCH_URL}, collection sentinel-2-l2a, public Cloud-Optimised "
        f"GeoTIFFs) by default; the Copernicus Data Space catalogue ({CDSE_STAC_URL}) also works where "
        "its assets are readable to you. Only the pixels of the extent are read, through HTTP range "
        "requests.\n\n"
        "Extent: any CRS (for example the map canvas). Dates: first and last acquisition day. Maximum "
        "cloud cover in percent. Maximum items: the first items the catalogue returns.\n\n"
        "True colour: TCI uses the catalogue's own true colour (visual); BANDS rebuilds it from red, green "
        "and blue reflectance with the scale and offset the catalogue gives, the way ESA makes TCI. TCI "
        "does not depend on the catalogue's offset metadata. Resolution: 20 m (default), 10 m or 60 m "
        "(qgis_process: RESOLUTION=20, 10 or 60); "
        "SCL is resampled with nearest neighbour only.\n\n"
        "Band list (optional, multispectral input): Sentinel-2 bands such as B04,B03,B02,B8A,B11,B12 or a "
        "preset ('true colour', 'SCL bands' = B02, B03, B04, B8A, B11, B12, or '20m'), written as in Prepare a "
        "Sentinel-2 L2A product: one uint16 GeoTIFF of reflectance x 10000 with the catalogue's offset applied, "
        "no data 0, bands described by their names (<item>_BANDS-<names>_<res>m.tif); finer bands averaged over "
        "their valid pixels, 20 m bands at 10 m repeated (nearest); a 60 m band at 10 or 20 m is refused, and "
        "an item without one of the bands is skipped naming the bands it has.\n\n"
        "Output folder: <item>_<TCI|BANDS>_<res>m.tif, <item>_SCL_<res>m.tif (styled with a .qml) and "
        "manifest.json. Running again into the same folder skips items already complete; an interrupted "
        "run leaves no partial files. Busy servers (HTTP 429, 5xx) are retried with growing waits.\n\n"
        "Credentials (only for catalogues that need them): an authentication configuration, or for "
        f"qgis_process a bearer token in the environment variable {TOKEN_ENV}. They are sent to the "
        "catalogue's own domain only and never written to the log.\n\n"
        "Needs an internet connection. A 20 km x 20 km extent at 20 m takes seconds per item."
    )

    def name(self) -> str:
        return "downloadl2a"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Download Sentinel-2 L2A scenes (STAC)")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        today = QDate.currentDate()
        self.addParameter(QgsProcessingParameterString(
            self.STAC_URL, self.tr("STAC API URL"), defaultValue=EARTH_SEARCH_URL))
        self.addParameter(QgsProcessingParameterString(
            self.COLLECTION, self.tr("Collection"), defaultValue=DEFAULT_COLLECTION))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent")))
        self.addParameter(QgsProcessingParameterDateTime(
            self.START_DATE, self.tr("First day"), type=QgsProcessingParameterDateTime.Date,
            defaultValue=today.addDays(-30)))
        self.addParameter(QgsProcessingParameterDateTime(
            self.END_DATE, self.tr("Last day"), type=QgsProcessingParameterDateTime.Date, defaultValue=today))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_CLOUD_COVER, self.tr("Maximum cloud cover (%)"), type=QgsProcessingParameterNumber.Double,
            defaultValue=20.0, minValue=0.0, maxValue=100.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_ITEMS, self.tr("Maximum number of items"), type=QgsProcessingParameterNumber.Integer,
            defaultValue=3, minValue=1, maxValue=100))
        self.addParameter(QgsProcessingParameterEnum(
            self.SOURCE, self.tr("True colour from"),
            options=[self.tr("TCI (the catalogue's true colour)"), self.tr("BANDS (red, green, blue reflectance)")],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.RESOLUTION, self.tr("Resolution (m)"), options=list(RESOLUTIONS), defaultValue="20",
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterString(
            self.BAND_LIST, self.tr("Band list (empty: true colour; e.g. B04,B03,B02,B8A,B11,B12 or SCL bands)"),
            defaultValue="", optional=True))
        self.addParameter(QgsProcessingParameterAuthConfig(
            self.AUTH_CONFIG, self.tr("Authentication (only if the catalogue needs it)"), optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_MANIFEST, self.tr("Manifest")))
        self.addOutput(QgsProcessingOutputNumber(self.ITEM_COUNT, self.tr("Items in the folder")))

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        start = self.parameterAsDateTime(parameters, self.START_DATE, context).date()
        end = self.parameterAsDateTime(parameters, self.END_DATE, context).date()
        if start > end:
            return False, self.tr("The first day is after the last day.")
        try:
            parse_band_list(self.parameterAsString(parameters, self.BAND_LIST, context))
        except InputError as exc:
            return False, str(exc)
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        extent = self.extent_bounds(parameters, self.EXTENT, context)
        crs = self.extent_crs(parameters, self.EXTENT, context) or "EPSG:4326"
        url = self.parameterAsString(parameters, self.STAC_URL, context).strip()
        search = SearchConfig(
            extent=extent,
            extent_crs=crs,
            start_date=self.parameterAsDateTime(parameters, self.START_DATE, context).date().toString("yyyy-MM-dd"),
            end_date=self.parameterAsDateTime(parameters, self.END_DATE, context).date().toString("yyyy-MM-dd"),
            url=url,
            collection=self.parameterAsString(parameters, self.COLLECTION, context).strip(),
            max_cloud_cover=self.parameterAsDouble(parameters, self.MAX_CLOUD_COVER, context),
            max_items=self.parameterAsInt(parameters, self.MAX_ITEMS, context),
        )
        config = DownloadConfig(
            source=SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)],
            resolution_m=int(self.parameterAsEnumString(parameters, self.RESOLUTION, context) or "20"),
            bands=parse_band_list(self.parameterAsString(parameters, self.BAND_LIST, context)),
        )
        headers = auth_headers(self.parameterAsString(parameters, self.AUTH_CONFIG, context), url)
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        with core_errors_as_processing_exceptions():
            result = download(search, config, folder, headers=headers, progress=FeedbackProgress(feedback))
        return {self.OUTPUT_FOLDER: folder, self.OUTPUT_MANIFEST: str(result.manifest),
                self.ITEM_COUNT: len(result.items)}


def auth_headers(authcfg: str, url: str) -> dict[str, str]:
    """The HTTP headers QGIS's authentication manager adds for ``authcfg`` (none without one)."""
    if not authcfg:
        return {}
    ok, request = QgsApplication.authManager().updateNetworkRequest(QNetworkRequest(QUrl(url)), authcfg)
    if not ok:
        raise QgsProcessingException(
            f"The authentication configuration {authcfg} cannot be used (unknown, or the master password is "
            "missing). Check it in Settings > Options > Authentication.")
    headers = {bytes(name).decode(): bytes(request.rawHeader(name)).decode() for name in request.rawHeaderList()}
    if not headers:
        raise QgsProcessingException(
            f"The authentication configuration {authcfg} adds no HTTP header; use a Basic, OAuth2 or API header "
            "configuration.")
    return headers
