"""The errors model_core raises: one root, leaves that also subclass a builtin.

Messages say what went wrong, where, and what to do next; the Processing
algorithms turn them into ``QgsProcessingException`` in one place.
"""

from __future__ import annotations


class SclDeepLabError(Exception):
    """Root of every error this package raises on purpose."""


class InputError(SclDeepLabError, ValueError):
    """A parameter or input file is unusable as given."""


class BandCountError(InputError):
    """A raster has too few bands, or not the bands a model expects."""


class MaskCodeError(InputError):
    """An SCL raster holds values that are not SCL codes 0-11."""


class GridError(InputError):
    """Two rasters do not overlap, or their grids cannot be matched."""


class OutputError(SclDeepLabError, OSError):
    """An output path cannot be written, or would overwrite something it must not."""


class RasterReadError(SclDeepLabError, OSError):
    """A raster cannot be opened or read."""


class ManifestError(SclDeepLabError, ValueError):
    """A patches manifest is missing, malformed, or points at missing files."""


class CheckpointError(SclDeepLabError, OSError):
    """A model checkpoint is missing, not a checkpoint, or incompatible."""


class WeightsNotFoundError(SclDeepLabError, FileNotFoundError):
    """Pretrained weights were asked for but are not on disk."""


class DownloadError(SclDeepLabError, ConnectionError):
    """A download failed: offline, refused by a proxy, an HTTP error, or a cut connection."""


class WeightsHashError(SclDeepLabError, ValueError):
    """A downloaded weights file is not the published one (its SHA-256 differs)."""


class DeviceError(SclDeepLabError, RuntimeError):
    """The requested device is not available or ran out of memory."""


class TrainingError(SclDeepLabError, RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


class Canceled(SclDeepLabError):
    """The user canceled; whatever was complete before stays valid."""


class CatalogueError(SclDeepLabError, ConnectionError):
    """A STAC catalogue or a remote image cannot be reached, or refused the request."""
