"""``scldeeplab:preparel2a``: a Sentinel-2 L2A product (.SAFE or .zip) as true colour and SCL GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..model_core.data.l2a_bands import parse_band_list
from ..model_core.data.safe import PrepareConfig, prepare_l2a
from ..model_core.errors import InputError
from .base import (
    RESOURCES,
    FeedbackProgress,
    SclAlgorithm,
    core_errors_as_processing_exceptions,
    refuse_overwriting_inputs,
    style_output,
)

SOURCES = ("TCI", "BANDS")
RESOLUTIONS = ("20", "10", "60")


class PrepareL2A(SclAlgorithm):
    """Reads a product in place and writes the two rasters the other algorithms take."""

    INPUT, SOURCE, RESOLUTION, EXTENT, BAND_LIST = "INPUT", "SOURCE", "RESOLUTION", "EXTENT", "BAND_LIST"
    OUTPUT_IMAGE, OUTPUT_SCL = "OUTPUT_IMAGE", "OUTPUT_SCL"
    GROUP = "data"
    HELP = (
        "Turns a Sentinel-2 Level-2A product into a true-colour GeoTIFF (3 bands, 8 bit) and its Scene "
        "Classification Layer (SCL, styled), on one grid in the product's CRS, ready for Make patches and "
        "Predict.\n\n"
        "Input: the product as ESA delivers it (Copernicus Data Space): the S2?_MSIL2A_*.SAFE folder, its "
        ".zip (read in place, not unpacked) or the MTD_MSIL2A.xml inside it. Processing baselines before "
        "and after 04.00 are handled.\n\n"
        "True colour: TCI is the product's own 8-bit true colour. BANDS builds the same from B04, B03 and "
        "B02: reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE (both from MTD_MSIL2A.xml; the "
        "offset is -1000 from baseline 04.00 on), then 0 for reflectance <= 0 and min(255, "
        "floor(reflectance x 1016) + 1) otherwise, which is how ESA makes TCI (reflectance 0-0.25 over "
        "1-255), so models trained on one work on the other.\n\n"
        "Band list (optional, multispectral input): Sentinel-2 bands such as B04,B03,B02,B8A,B11,B12, or a "
        "preset: 'true colour' (B04, B03, B02), 'SCL bands' (B02, B03, B04, B8A, B11, B12: the near- and "
        "short-wave infrared the SCL is computed from) or '20m' (B02-B07, B8A, B11, B12). The scene is then "
        "one uint16 GeoTIFF of reflectance x 10000 with the offset applied (round((DN + BOA_ADD_OFFSET) x "
        "10000 / BOA_QUANTIFICATION_VALUE), at least 1; no data 0), its bands described by their names, which "
        "Make patches and Predict read; True colour from is then not used. Bands finer than the resolution "
        "are averaged over their valid pixels (10 m to 20 m: 2 x 2, to 60 m: 6 x 6); 20 m bands at 10 m repeat "
        "each pixel 2 x 2 (nearest neighbour); a 60 m band (B01, B09) at 10 or 20 m is refused, as is a band "
        "the product does not have (the message lists those it has).\n\n"
        "Resolution: 20 m (default), 10 m or 60 m (qgis_process: RESOLUTION=20, 10 or 60). SCL exists at "
        "20 and 60 m; at 10 m each SCL pixel is "
        "repeated (nearest neighbour, codes are never averaged).\n\n"
        "Extent (optional): crops both outputs; leave empty for the whole tile.\n\n"
        "Reads in bands of rows: a whole 20 m tile (5490 x 5490 px) takes about 5 s (TCI) to 15 s (BANDS) "
        "on a CPU, up to three times longer from a compressed .zip, and a few hundred MB of memory."
    )

    def name(self) -> str:
        return "preparel2a"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Prepare a Sentinel-2 L2A product")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("L2A product (.SAFE folder, .zip or MTD_MSIL2A.xml)"),
            behavior=QgsProcessingParameterFile.File,
            fileFilter="Sentinel-2 L2A product (*.zip *.SAFE MTD_MSIL2A.xml);;All files (*)"))
        self.addParameter(QgsProcessingParameterEnum(
            self.SOURCE, self.tr("True colour from"),
            options=[self.tr("TCI (the product's 8-bit true colour)"), self.tr("BANDS (B04, B03, B02 reflectance)")],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.RESOLUTION, self.tr("Resolution (m)"), options=list(RESOLUTIONS), defaultValue="20",
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, self.tr("Extent (empty: whole tile)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.BAND_LIST, self.tr("Band list (empty: true colour; e.g. B04,B03,B02,B8A,B11,B12 or SCL bands)"),
            defaultValue="", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_IMAGE, self.tr("True-colour scene")))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_SCL, self.tr("Scene classification (SCL)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        try:
            parse_band_list(self.parameterAsString(parameters, self.BAND_LIST, context))
        except InputError as exc:
            return False, str(exc)
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        product = self.parameterAsFile(parameters, self.INPUT, context)
        source = SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)]
        resolution = int(self.parameterAsEnumString(parameters, self.RESOLUTION, context) or "20")
        extent = self.extent_bounds(parameters, self.EXTENT, context)
        extent_crs = self.extent_crs(parameters, self.EXTENT, context) if extent else None
        image = self.parameterAsOutputLayer(parameters, self.OUTPUT_IMAGE, context)
        scl_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_SCL, context)
        refuse_overwriting_inputs({self.INPUT: product}, {self.OUTPUT_IMAGE: image, self.OUTPUT_SCL: scl_path})
        with core_errors_as_processing_exceptions():
            bands = parse_band_list(self.parameterAsString(parameters, self.BAND_LIST, context))
            config = PrepareConfig(source=source, resolution_m=resolution, extent=extent, extent_crs=extent_crs,
                                   bands=bands)
            scene = prepare_l2a(Path(product), Path(image), Path(scl_path), config, progress=FeedbackProgress(feedback))
        feedback.pushInfo(self.tr("Wrote {w} x {h} px at {res} m in {crs}.").format(
            w=scene.width, h=scene.height, res=scene.resolution_m, crs=scene.crs))
        style_output(context, scl_path, RESOURCES / "scl.qml", self.tr("SCL"))
        return {self.OUTPUT_IMAGE: image, self.OUTPUT_SCL: scl_path}
