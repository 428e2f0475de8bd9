"""GeoTIFF writing that cannot end in a silently broken file.

GDAL reports a failed write (a full disk, a lost network share) through its
error handler and carries on, and rasterio only logs that; the file it leaves
behind does not open. ``checked_raster`` collects GDAL's failures while a raster
is written, then reads the closed file back whole, and raises ``OutputError``
when either went wrong: the caller's ``atomic_file`` then keeps the earlier file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio

from ..atomic import no_space_message
from ..errors import OutputError

# rasterio passes GDAL's CE_Failure messages to this logger at INFO level.
_GDAL_LOG = logging.getLogger("rasterio._env")
_FAILURE_PREFIX = "GDAL signalled an error"
# RasterioIOError is not a RasterioError.
_RASTERIO_ERRORS = (rasterio.errors.RasterioError, rasterio.errors.RasterioIOError)
_LEVEL_LOCK = threading.Lock()
_LISTENERS = 0
_SAVED_LEVEL = logging.NOTSET


class _Failures(logging.Handler):
    """GDAL failures logged by this thread while the handler is attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and record.getMessage().startswith(_FAILURE_PREFIX):
            args = record.args if isinstance(record.args, tuple) else ()
            self.messages.append(str(args[-1]) if args else record.getMessage())


@contextmanager
def gdal_failures() -> Iterator[list[str]]:
    """Collect the messages of GDAL failures raised in this thread inside the block."""
    global _LISTENERS, _SAVED_LEVEL
    handler = _Failures()
    # rasterio's GDAL error handler is installed only inside an Env: outside one, a failed
    # write while closing goes to GDAL's default handler (stderr) and nowhere else.
    env = rasterio.Env()
    with _LEVEL_LOCK:
        if _LISTENERS == 0:
            _SAVED_LEVEL = _GDAL_LOG.level
            if not _GDAL_LOG.isEnabledFor(logging.INFO):
                _GDAL_LOG.setLevel(logging.INFO)
        _LISTENERS += 1
        _GDAL_LOG.addHandler(handler)
    try:
        with env:
            yield handler.messages
    finally:
        with _LEVEL_LOCK:
            _GDAL_LOG.removeHandler(handler)
            _LISTENERS -= 1
            if _LISTENERS == 0:
                _GDAL_LOG.setLevel(_SAVED_LEVEL)


def _failure(final: Path, reasons: list[str]) -> OutputError:
    reason = "; ".join(dict.fromkeys(r.strip() for r in reasons if r.strip()))[:300]
    if "no space left" in reason.lower():
        return OutputError(f"{no_space_message(final)} (GDAL: {reason})")
    return OutputError(
        f"Writing {final} failed ({reason or 'the written file does not read back'}). "
        "Check the disk and the folder's permissions; any earlier file of that name was kept."
    )


def verify_raster(path: Path | str, final: Path | str) -> None:
    """Read every block of the raster at ``path`` (the temporary file of ``final``); ``OutputError`` when one fails."""
    with gdal_failures() as failures:
        try:
            with rasterio.open(path) as src:
                for _, window in src.block_windows(1):
                    src.read(window=window)
        except _RASTERIO_ERRORS as exc:
            raise _failure(Path(final), failures or [str(exc)]) from exc


@contextmanager
def checked_raster(path: Path | str, final: Path | str, **profile: Any) -> Iterator[rasterio.io.DatasetWriter]:
    """Open ``path`` for writing; after the block, close it and check it was written whole.

    ``path`` is the temporary file (from ``atomic_file``) that becomes ``final``;
    messages name ``final``. Raises ``OutputError`` when GDAL reported a failure
    while writing, or when the closed file does not read back.
    """
    final = Path(final)

    def about_this_file(messages: list[str]) -> list[str]:
        # Reads of an input inside the block may fail too: those are not this file's failures.
        return [m for m in messages if str(path) in m or "writ" in m.lower() or "no space" in m.lower()]

    with gdal_failures() as failures:
        try:
            with rasterio.open(path, "w", **profile) as dst:
                yield dst
        except _RASTERIO_ERRORS as exc:
            if about_this_file(failures):
                raise _failure(final, about_this_file(failures)) from exc
            raise
        if about_this_file(failures):
            raise _failure(final, about_this_file(failures))
    verify_raster(path, final)
