"""How a predicted SCL raster agrees with a reference SCL, block by block.

The reference is seen on the prediction's grid (nearest, so codes stay codes);
both are read in bands of rows, so memory does not grow with the scene. Code 0
(no data) in either is left out of every number. The disagreement raster holds
the reference's code where the two differ and 0 (transparent) elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from .. import scl
from ..atomic import atomic_file, final_path
from ..data.raster_write import checked_raster
from ..data.rasters import check_scl_codes, extent_window, label_profile, onto_grid, open_raster
from ..errors import InputError
from ..progress import SILENT, Progress, SubProgress, check_canceled
from ..styles import disagreement_qml, write_style
from .metrics import Evaluation, confusion_from_codes, scores

BLOCK_ROWS = 512


@dataclass(frozen=True)
class EvaluationOutputs:
    """Where ``evaluate_to_files`` writes; ``None`` skips an output."""

    report: Path | None = None
    matrix_csv: Path | None = None
    matrix_png: Path | None = None
    disagreement: Path | None = None
    figure: Path | None = None
    metrics_json: Path | None = None


def _row_blocks(window: Window, rows: int) -> Iterator[Window]:
    height = int(window.height)
    for top in range(0, height, rows):
        yield Window(int(window.col_off), int(window.row_off) + top, int(window.width), min(rows, height - top))


def disagreement_codes(reference: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """The reference's code where both have a class and differ; 0 where they agree or either is no data."""
    differ = (reference != prediction) & (reference != scl.NO_DATA) & (prediction != scl.NO_DATA)
    return np.where(differ, reference, scl.NO_DATA).astype(np.uint8)


def evaluate_scene(
    prediction: Path | str,
    reference: Path | str,
    *,
    extent: tuple[float, float, float, float] | None = None,
    disagreement_path: Path | str | None = None,
    progress: Progress = SILENT,
) -> Evaluation:
    """Compare a predicted SCL raster with a reference SCL raster on the prediction's grid.

    Args:
        prediction: SCL codes (band 1), e.g. the output of ``predict``.
        reference: the real SCL; brought onto the prediction's grid with nearest when the grids differ.
        extent: (left, bottom, right, top) in the prediction's CRS; ``None`` compares everything.
        disagreement_path: where to write the disagreement raster (as given: callers wanting an
            atomic write pass a temporary path).

    Raises:
        MaskCodeError: either raster holds values that are not SCL codes 0-11.
        GridError: the rasters (or the extent) do not overlap.
        InputError: no pixel has a class in both.
    """
    matrix = np.zeros((scl.NUM_CLASSES, scl.NUM_CLASSES), dtype=np.int64)
    differing = 0
    with ExitStack() as stack:
        pred_src = stack.enter_context(open_raster(prediction))
        ref_src = stack.enter_context(onto_grid(reference, pred_src, what="reference SCL"))
        window = Window(0, 0, pred_src.width, pred_src.height)
        if extent is not None:
            window = extent_window(pred_src, extent)
        width, height = int(window.width), int(window.height)
        dst = None
        if disagreement_path is not None:
            profile = label_profile(
                {"width": width, "height": height, "crs": pred_src.crs,
                 "transform": window_transform(window, pred_src.transform)}
            )
            dst = stack.enter_context(checked_raster(disagreement_path, final_path(disagreement_path), **profile))
            dst.write_colormap(1, scl.colormap())
        blocks = list(_row_blocks(window, BLOCK_ROWS))
        for i, block in enumerate(blocks):
            check_canceled(progress)
            pred = pred_src.read(1, window=block)
            ref = ref_src.read(1, window=block)
            check_scl_codes(pred, f"The prediction {prediction}")
            check_scl_codes(ref, f"The reference {reference}")
            matrix += confusion_from_codes(ref, pred)
            diff = disagreement_codes(ref, pred)
            differing += int(np.count_nonzero(diff))
            if dst is not None:
                dst.write(diff, 1, window=Window(0, int(block.row_off - window.row_off), width, int(block.height)))
            progress.set_progress(100.0 * (i + 1) / len(blocks))
        crs = pred_src.crs.to_string() if pred_src.crs else ""
        bounds = tuple(float(v) for v in window_bounds(window, pred_src.transform))
    if matrix.sum() == 0:
        raise InputError(
            f"No pixel has a class in both the prediction {prediction} and the reference {reference} "
            "(one of them is no data, code 0, everywhere in the compared area). Check the extent and the rasters."
        )
    return Evaluation(
        scores=scores(matrix),
        prediction=Path(prediction),
        reference=Path(reference),
        width=width,
        height=height,
        bounds=bounds,  # type: ignore[arg-type]
        crs=crs,
        disagreeing_pixels=differing,
    )


def evaluate_to_files(
    prediction: Path | str,
    reference: Path | str,
    outputs: EvaluationOutputs,
    *,
    extent: tuple[float, float, float, float] | None = None,
    image: Path | str | None = None,
    progress: Progress = SILENT,
) -> Evaluation:
    """``evaluate_scene`` plus the report, matrix, figures and metrics, all written or none.

    Every output goes to a temporary file first; only when all are complete are
    they renamed into place, so an error or a cancel leaves none behind.
    """
    from . import report

    with ExitStack() as stack:
        tmp = {
            name: stack.enter_context(atomic_file(path))
            for name, path in vars(outputs).items()
            if path is not None
        }
        evaluation = evaluate_scene(
            prediction, reference, extent=extent, disagreement_path=tmp.get("disagreement"),
            progress=SubProgress(progress, 0, 70),
        )
        progress.info(
            f"Pixel accuracy {evaluation.scores.pixel_accuracy:.3f}, mean IoU {evaluation.scores.mean_iou:.3f}, "
            f"kappa {evaluation.scores.kappa:.3f} over {int(evaluation.scores.matrix.sum())} pixels."
        )
        check_canceled(progress)
        report.write_all(evaluation, tmp, final=vars(outputs), image=image, extent=extent)
        progress.set_progress(100)
    if outputs.disagreement is not None:
        write_style(outputs.disagreement, disagreement_qml())
    return evaluation
