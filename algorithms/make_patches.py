"""``scldeeplab:makepatches``: cut one or several scenes and their SCLs into training patches."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..model_core.data.patches import PatchConfig, make_patches, parse_bands, parse_names
from ..model_core.data.scenes import Scene, read_scene_list, scenes_from_images, scenes_in_folder
from ..model_core.data.windows import SPLITS as SPLIT_NAMES
from ..model_core.data.windows import largest_patch
from ..model_core.errors import InputError
from ..model_core.sizing import SIZE_MULTIPLE, is_valid_size, size_suggestions
from .base import (
    FeedbackProgress,
    SclAlgorithm,
    core_errors_as_processing_exceptions,
    number_out_of_range,
    refuse_overwriting_inputs,
)


class MakePatches(SclAlgorithm):
    """Training patches (image and SCL GeoTIFFs), a manifest and a preview figure."""

    INPUT, BANDS, MASK = "INPUT", "BANDS", "MASK"
    INPUTS, SCENE_LIST, SCENE_FOLDER = "INPUTS", "SCENE_LIST", "SCENE_FOLDER"
    PATCH_SIZE, STRIDE, MIN_VALID_FRACTION = "PATCH_SIZE", "STRIDE", "MIN_VALID_FRACTION"
    VAL_FRACTION, SPLIT, VAL_SCENES, SEED, OVERWRITE = "VAL_FRACTION", "SPLIT", "VAL_SCENES", "SEED", "OVERWRITE"
    UNKNOWN_CODES_AS_NO_DATA = "UNKNOWN_CODES_AS_NO_DATA"
    OUTPUT_FOLDER, OUTPUT_INDEX, OUTPUT_PREVIEW = "OUTPUT_FOLDER", "OUTPUT_INDEX", "OUTPUT_PREVIEW"
    TRAIN_COUNT, VAL_COUNT, SCENE_COUNT = "TRAIN_COUNT", "VAL_COUNT", "SCENE_COUNT"
    SPLITS = SPLIT_NAMES  # in the order of the SPLIT options
    GROUP = "data"
    HELP = (
        "Cuts Sentinel-2 true-colour scenes and their Scene Classification Layer (SCL) into square "
        "training patches for the training algorithms, one dataset from one or many scenes.\n\n"
        "Scenes, give one of: True-colour scene with its SCL mask (one pair); True-colour scenes (several "
        "images; each one's SCL is the file in the same folder named like it with its true-colour part "
        "(TCI, BANDS, BOA, RGB..., scene or image) replaced by SCL or scl, or with _SCL added: "
        "T29UNU_TCI_60m.tif -> T29UNU_SCL_60m.tif, train_scene.tif -> train_scl.tif, x.tif -> x_SCL.tif; "
        "selected SCL files are recognised and left out); a Scene list (a text file, one image,scl pair a "
        "line, # starts a comment, relative paths are taken from the list's folder); or a Scene folder (one "
        "Download L2A wrote, read through its manifest.json, or any folder of images and SCLs paired by the "
        "naming rule). A scene is named after its image file (a Download L2A item by its id).\n\n"
        "Scenes may differ in size and CRS but must share one data type (all 8-bit true colour or all "
        "16-bit reflectance) and one pixel size (to 1 %); other scenes are refused, not converted, and "
        "every scene that cannot be used is named with its reason before anything is written.\n"
        "Bands: the scene's band numbers the model will read, in order: red, green and blue (e.g. 1,2,3 for "
        "TCI, or 3,2,1 for a B02,B03,B04 stack), or any longer list for multispectral input (e.g. 3,2,1,4,5,6 "
        "for a B02,B03,B04,B8A,B11,B12 scene written by Prepare L2A). The bands' names (from the raster's band "
        "descriptions) go into index.json and the model; all scenes need the same bands in the same order. "
        "Multispectral 16-bit patches are read as reflectance (values / 10000) and normalised per band by the "
        "training patches' mean and std; true colour keeps /255 (8-bit) or /2500 (16-bit).\n"
        "Each SCL may have another resolution or CRS than its image (e.g. 20 m beside 10 m bands): it is "
        "resampled onto the image's grid with nearest neighbour. SCL values outside 0-11 are refused unless "
        "Treat SCL codes outside 0-11 as no data is on (e.g. code 12 in lossy JPEG 2000 SCLs); the log then "
        "says how many pixels of each scene became no data.\n"
        "Patch size: pixels, a multiple of 8. Stride: the step between patches; 0 means the patch size "
        "(no overlap). The last row and column are moved inward so the edges are covered without padding. "
        "Training from random weights cuts 128 px crops from the patches, so the default 512 px suits it too; on "
        "scenes under about 1000 px use 256 px, or spatial blocks cannot be held apart for validation.\n"
        "Minimum valid fraction: the share of pixels with a non-zero SCL code a patch needs to be kept; "
        "scene pixels that are NaN, the scene's no-data value or 0 in every band count as code 0 (Predict "
        "writes no data there).\n"
        "Split: spatial blocks (within each scene) keep neighbouring patches together, and training patches "
        "that overlap a validation patch are left out, so no pixel is on both sides; random picks single "
        "patches; whole scenes sends every patch of the Validation scenes (names, comma-separated) to "
        "validation, or, with no names, the Validation fraction of the scenes (at least one, never all). A "
        "split by scenes whose validation or training scenes give no patch is refused. The log and index.json "
        "say which scenes trained and which validated.\n\n"
        "Output folder: images/ and masks/ GeoTIFFs (georeferenced, drag them into QGIS), index.json (the "
        "manifest the training algorithms take as Patches, with class histograms per scene and in total) and "
        "preview.png (patches from several scenes). A folder that is not empty is refused. Overwrite replaces only "
        "what an earlier run of this algorithm wrote there (its index.json, images/, masks/ and preview.png); a "
        "folder that also holds a scene, an SCL or any other file is still refused, and those files are listed. "
        "Takes seconds for a 2000 x 2000 px scene."
    )

    def name(self) -> str:
        return "makepatches"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Make training patches")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("True-colour scene"), optional=True))
        self.addParameter(
            QgsProcessingParameterString(
                self.BANDS, self.tr("Bands (red, green, blue, then any further bands)"), defaultValue="1,2,3"
            )
        )
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, self.tr("SCL mask"), optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUTS, self.tr("True-colour scenes (SCL found by name beside each)"),
            layerType=QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.SCENE_LIST, self.tr("Scene list (one image,scl pair a line)"),
            behavior=QgsProcessingParameterFile.File, fileFilter="Scene lists (*.txt *.csv);;All files (*)",
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.SCENE_FOLDER, self.tr("Scene folder (Download L2A output, or images beside their SCLs)"),
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.PATCH_SIZE,
                self.tr("Patch size (px, multiple of 8)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=512,
                minValue=SIZE_MULTIPLE,
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
                options=[self.tr("Spatial blocks (no overlap across the split)"), self.tr("Random patches"),
                         self.tr("Whole scenes")],
                defaultValue=0,
            )
        )
        self.addParameter(QgsProcessingParameterString(
            self.VAL_SCENES, self.tr("Validation scenes (names, comma-separated; split by whole scenes)"),
            optional=True))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0
            )
        )
        self.addParameter(QgsProcessingParameterBoolean(
            self.UNKNOWN_CODES_AS_NO_DATA, self.tr("Treat SCL codes outside 0-11 as no data"), False))
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.OVERWRITE, self.tr("Overwrite an earlier run's patches in the output folder"), False
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_INDEX, self.tr("Patches manifest (index.json)")))
        self.addOutput(QgsProcessingOutputNumber(self.TRAIN_COUNT, self.tr("Training patches")))
        self.addOutput(QgsProcessingOutputNumber(self.VAL_COUNT, self.tr("Validation patches")))
        self.addOutput(QgsProcessingOutputNumber(self.SCENE_COUNT, self.tr("Scenes")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_PREVIEW, self.tr("Preview figure (PNG)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        try:
            parse_bands(self.parameterAsString(parameters, self.BANDS, context))
        except InputError as exc:
            return False, str(exc)
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        if stride < 0:
            return False, self.tr(
                "Stride {stride} px is negative; use a positive step in pixels, or 0 for the patch size."
            ).format(stride=stride)
        out_of_range = number_out_of_range(self, parameters)  # the declared limits, as every algorithm
        if out_of_range:
            return False, out_of_range
        size = self.parameterAsInt(parameters, self.PATCH_SIZE, context)
        if not is_valid_size(size):
            lower, upper = size_suggestions(size)
            return False, self.tr("Patch size {size} px is not a multiple of 8; use e.g. {lower} or {upper}.").format(
                size=size, lower=lower, upper=upper
            )
        problem = self._sources_problem(parameters, context)
        if problem:
            return False, problem
        rasters = {self.INPUT: self.tr("scene"), self.MASK: self.tr("SCL mask")}
        unreadable = self.unreadable_raster(parameters, context, rasters)
        if unreadable:
            return False, unreadable
        scene = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if scene is not None and (size > scene.width() or size > scene.height()):
            return False, self.tr(
                "Patch size {size} px is larger than the scene ({w} x {h} px); use at most {most}."
            ).format(size=size, w=scene.width(), h=scene.height(), most=largest_patch(scene.width(), scene.height()))
        return super().checkParameterValues(parameters, context)

    def _sources_problem(self, parameters, context) -> str:
        """Why the given scenes cannot be read as exactly one source, or "" when they can."""
        pair = [bool(parameters.get(key)) for key in (self.INPUT, self.MASK)]
        if pair[0] != pair[1]:
            return self.tr("Give both the true-colour scene and its SCL mask, or neither (and other scenes instead).")
        given = [all(pair), bool(self.parameterAsLayerList(parameters, self.INPUTS, context) or
                                 parameters.get(self.INPUTS)),
                 bool(self.parameterAsFile(parameters, self.SCENE_LIST, context)),
                 bool(self.parameterAsFile(parameters, self.SCENE_FOLDER, context))]
        if not any(given):
            return self.tr("Give the scenes: a true-colour scene with its SCL mask, several true-colour scenes, a "
                           "scene list or a scene folder.")
        if sum(given) > 1:
            return self.tr("Give the scenes one way only: a scene with its SCL mask, several scenes, a scene list "
                           "or a scene folder, not more than one of them.")
        return ""

    def _scenes(self, parameters, context) -> list[Scene]:
        """The scenes from whichever source was given."""
        if parameters.get(self.INPUT):
            scene = self.parameterAsRasterLayer(parameters, self.INPUT, context)
            mask = self.parameterAsRasterLayer(parameters, self.MASK, context)
            return [Scene(Path(scene.source()), Path(mask.source()))]
        scene_list = self.parameterAsFile(parameters, self.SCENE_LIST, context)
        if scene_list:
            return read_scene_list(Path(scene_list))
        folder = self.parameterAsFile(parameters, self.SCENE_FOLDER, context)
        if folder:
            return scenes_in_folder(Path(folder))
        layers = self.parameterAsLayerList(parameters, self.INPUTS, context)
        given = parameters.get(self.INPUTS)
        wanted = len(given) if isinstance(given, (list, tuple)) else 1
        if len(layers) < wanted:
            raise InputError(f"Only {len(layers)} of the {wanted} true-colour scenes can be read as rasters "
                             f"({given}). Check that the files exist and are rasters.")
        return scenes_from_images(Path(layer.source()) for layer in layers)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        problem = self._sources_problem(parameters, context)
        if problem:
            raise QgsProcessingException(problem)
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context)
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
                val_scenes=parse_names(self.parameterAsString(parameters, self.VAL_SCENES, context)),
                unknown_codes_as_no_data=self.parameterAsBoolean(parameters, self.UNKNOWN_CODES_AS_NO_DATA, context),
            )
            scenes = self._scenes(parameters, context)
            refuse_overwriting_inputs(
                {**{f"{self.INPUT} ({s.name})": s.image for s in scenes},
                 **{f"{self.MASK} ({s.name})": s.mask for s in scenes}},
                {self.OUTPUT_FOLDER: folder},
            )
            feedback.pushInfo(self.tr("{n} scene(s): {names}.").format(
                n=len(scenes), names=", ".join(s.name for s in scenes)))
            result = make_patches(scenes, Path(folder), config, progress=FeedbackProgress(feedback))
        return {
            self.OUTPUT_FOLDER: folder,
            self.OUTPUT_INDEX: str(result.index),
            self.TRAIN_COUNT: result.train_count,
            self.VAL_COUNT: result.val_count,
            self.SCENE_COUNT: len(scenes),
            self.OUTPUT_PREVIEW: str(result.preview),
        }
