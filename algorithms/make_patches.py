"""``scldeeplab:makepatches``: cut a scene and its SCL into training patches."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..model_core.data.patches import PATCH_MULTIPLE, PatchConfig, make_patches, parse_bands
from ..model_core.data.windows import largest_patch
from ..model_core.errors import InputError
from .base import FeedbackProgress, SclAlgorithm, core_errors_as_processing_exceptions, refuse_overwriting_inputs


class MakePatches(SclAlgorithm):
    """Training patches (image and SCL GeoTIFFs), a manifest and a preview figure."""

    INPUT, BANDS, MASK = "INPUT", "BANDS", "MASK"
    PATCH_SIZE, STRIDE, MIN_VALID_FRACTION = "PATCH_SIZE", "STRIDE", "MIN_VALID_FRACTION"
    VAL_FRACTION, SPLIT, SEED, OVERWRITE = "VAL_FRACTION", "SPLIT", "SEED", "OVERWRITE"
    OUTPUT_FOLDER, OUTPUT_INDEX, OUTPUT_PREVIEW = "OUTPUT_FOLDER", "OUTPUT_INDEX", "OUTPUT_PREVIEW"
    TRAIN_COUNT, VAL_COUNT = "TRAIN_COUNT", "VAL_COUNT"
    SPLITS = ("blocks", "random")
    GROUP = "data"
    HELP = (
        "Cuts a Sentinel-2 true-colour scene and its Scene Classification Layer (SCL) into square "
        "training patches for the training algorithms.\n\n"
        "Scene: a raster with at least 3 bands; Bands says which are red, green and blue (e.g. 1,2,3 "
        "for TCI, or 3,2,1 for a B02,B03,B04 stack). 8-bit true colour and 16-bit reflectance both work.\n"
        "SCL mask: the SCL of the same tile and date. It may have another resolution or CRS (e.g. 20 m "
        "beside 10 m bands): it is resampled onto the scene's grid with nearest neighbour.\n"
        "Patch size: pixels, a multiple of 8. Stride: the step between patches; 0 means the patch size "
        "(no overlap). The last row and column are moved inward so the edges are covered without padding.\n"
        "Minimum valid fraction: the share of pixels with a non-zero SCL code a patch needs to be kept; "
        "scene pixels that are NaN or the scene's no-data value count as code 0.\n"
        "Split: spatial blocks keep neighbouring patches together, and training patches that overlap a "
        "validation patch are left out, so no pixel is on both sides; random picks single patches.\n\n"
        "Output folder: images/ and masks/ GeoTIFFs (georeferenced, drag them into QGIS), index.json (the "
        "manifest the training algorithms take as Patches) and preview.png. A folder that is not empty is "
        "refused. Overwrite replaces only what an earlier run of this algorithm wrote there (its index.json, "
        "images/, masks/ and preview.png); a folder that also holds the scene, the SCL or any other file is "
        "still refused, and those files are listed. Takes seconds for a 2000 x 2000 px scene."
    )

    def name(self) -> str:
        return "makepatches"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Make training patches")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("True-colour scene")))
        self.addParameter(
            QgsProcessingParameterString(self.BANDS, self.tr("Red, green, blue bands"), defaultValue="1,2,3")
        )
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, self.tr("SCL mask")))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.PATCH_SIZE,
                self.tr("Patch size (px, multiple of 8)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=512,
                minValue=PATCH_MULTIPLE,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.STRIDE,
                self.tr("Stride (px, 0 = patch size)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MIN_VALID_FRACTION,
                self.tr("Minimum valid fraction (non-zero SCL)"),
                type=QgsProcessingParameterNumber.Double,
                defaultValue=0.5,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.VAL_FRACTION,
                self.tr("Validation fraction"),
                type=QgsProcessingParameterNumber.Double,
                defaultValue=0.2,
                minValue=0.0,
                maxValue=0.9,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.SPLIT,
                self.tr("Train / validation split"),
                options=[self.tr("Spatial blocks (no overlap across the split)"), self.tr("Random patches")],
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.OVERWRITE, self.tr("Overwrite an earlier run's patches in the output folder"), False
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_INDEX, self.tr("Patches manifest (index.json)")))
        self.addOutput(QgsProcessingOutputNumber(self.TRAIN_COUNT, self.tr("Training patches")))
        self.addOutput(QgsProcessingOutputNumber(self.VAL_COUNT, self.tr("Validation patches")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_PREVIEW, self.tr("Preview figure (PNG)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        try:
            parse_bands(self.parameterAsString(parameters, self.BANDS, context))
        except InputError as exc:
            return False, str(exc)
        size = self.parameterAsInt(parameters, self.PATCH_SIZE, context)
        if size % PATCH_MULTIPLE:
            lower = max(PATCH_MULTIPLE, size // PATCH_MULTIPLE * PATCH_MULTIPLE)
            return False, self.tr("Patch size {size} px is not a multiple of 8; use e.g. {lower} or {upper}.").format(
                size=size, lower=lower, upper=lower + PATCH_MULTIPLE
            )
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        if stride < 0:
            return False, self.tr(
                "Stride {stride} px is negative; use a positive step in pixels, or 0 for the patch size."
            ).format(stride=stride)
        for key, what in ((self.INPUT, self.tr("scene")), (self.MASK, self.tr("SCL mask"))):
            if parameters.get(key) and self.parameterAsRasterLayer(parameters, key, context) is None:
                message = self.tr("Cannot read the {what} {value}: check that the file exists and is a raster.")
                return False, message.format(what=what, value=parameters[key])
        scene = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if scene is not None and (size > scene.width() or size > scene.height()):
            return False, self.tr(
                "Patch size {size} px is larger than the scene ({w} x {h} px); use at most {most}."
            ).format(size=size, w=scene.width(), h=scene.height(), most=largest_patch(scene.width(), scene.height()))
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        scene = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        mask = self.parameterAsRasterLayer(parameters, self.MASK, context)
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context)
        refuse_overwriting_inputs({self.INPUT: scene.source(), self.MASK: mask.source()}, {self.OUTPUT_FOLDER: folder})
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        with core_errors_as_processing_exceptions():
            config = PatchConfig(
                patch_size_px=self.parameterAsInt(parameters, self.PATCH_SIZE, context),
                stride_px=stride or None,
                bands=parse_bands(self.parameterAsString(parameters, self.BANDS, context)),
                min_valid_fraction=self.parameterAsDouble(parameters, self.MIN_VALID_FRACTION, context),
                val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
                split=self.SPLITS[self.parameterAsEnum(parameters, self.SPLIT, context)],
                seed=self.parameterAsInt(parameters, self.SEED, context),
                overwrite=self.parameterAsBoolean(parameters, self.OVERWRITE, context),
            )
            result = make_patches(
                Path(scene.source()), Path(mask.source()), Path(folder), config, progress=FeedbackProgress(feedback)
            )
        return {
            self.OUTPUT_FOLDER: folder,
            self.OUTPUT_INDEX: str(result.index),
            self.TRAIN_COUNT: result.train_count,
            self.VAL_COUNT: result.val_count,
            self.OUTPUT_PREVIEW: str(result.preview),
        }
