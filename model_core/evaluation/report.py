"""What an evaluation leaves behind: the confusion matrix (CSV and PNG), the result
figure (input | reference | prediction) and an HTML report with everything in it.

Figures are ``matplotlib.figure.Figure`` objects (no pyplot); the HTML page embeds
them, so it is one file that opens in any browser and keeps working when moved.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import io
import json
from contextlib import ExitStack
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rasterio.enums import Resampling
from rasterio.windows import Window

from .. import scl
from ..data import bands
from ..data.rasters import check_bands, extent_window, onto_grid, open_raster
from .metrics import Evaluation, Scores
from .plotting import band_picture, scl_legend, scl_rgb

FIGURE_MAX_PX = 1024  # longest side of each panel of the result figure
DPI = 110


def write_matrix_csv(path: Path | str, matrix: np.ndarray) -> None:
    """The confusion matrix as CSV: one row per reference class, one column per predicted class, pixel counts."""
    labels = [f"{c.code} {c.name}" for c in scl.LEARNED]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["reference \\ predicted", *labels, "total"])
        for label, row in zip(labels, np.asarray(matrix, dtype=np.int64)):
            writer.writerow([label, *row.tolist(), int(row.sum())])
        writer.writerow(["total", *np.asarray(matrix).sum(axis=0).astype(int).tolist(), int(np.asarray(matrix).sum())])


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the share of a reference class predicted as each class); NaN for empty rows."""
    m = np.asarray(matrix, dtype=np.float64)
    totals = m.sum(axis=1, keepdims=True)
    out = np.full(m.shape, np.nan)
    np.divide(m, totals, out=out, where=totals > 0)
    return out


def confusion_figure(scores: Scores) -> Figure:
    """The row-normalised confusion matrix with class names and SCL colour strips on both axes."""
    share = row_normalised(scores.matrix)
    n = scl.NUM_CLASSES
    names = [f"{c.code} {c.name}" for c in scl.LEARNED]
    colors = scl.palette_rgb()[scl.learned_codes()]
    fig = Figure(figsize=(9.5, 8.4), dpi=DPI)
    grid = fig.add_gridspec(2, 3, width_ratios=[0.35, n, 0.5], height_ratios=[n, 0.35],
                            left=0.27, right=0.92, bottom=0.22, top=0.9, wspace=0.03, hspace=0.03)
    ax = fig.add_subplot(grid[0, 1])
    image = ax.imshow(np.ma.masked_invalid(share), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (r, c), value in np.ndenumerate(share):
        if np.isfinite(value) and value >= 0.005:
            ax.text(c, r, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 else "#222222")
    ax.set_xticks([])
    ax.set_yticks([])
    left = fig.add_subplot(grid[0, 0])
    left.imshow(colors[:, None, :], aspect="auto")
    left.set_xticks([])
    left.set_yticks(range(n), [f"{name} ({int(t)})" for name, t in zip(names, scores.reference_pixels)], fontsize=8)
    left.set_ylabel("Reference SCL (pixels)")
    bottom = fig.add_subplot(grid[1, 1])
    bottom.imshow(colors[None, :, :], aspect="auto")
    bottom.set_yticks([])
    bottom.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    bottom.set_xlabel("Predicted SCL")
    bar = fig.colorbar(image, cax=fig.add_subplot(grid[0, 2]))
    bar.set_label("Share of the reference class (%)")
    bar.set_ticks([0, 0.25, 0.5, 0.75, 1], labels=["0", "25", "50", "75", "100"])
    fig.suptitle(
        f"Confusion matrix, rows normalised (% of each reference class)\n"
        f"pixel accuracy {scores.pixel_accuracy:.3f}, mean IoU {scores.mean_iou:.3f}, kappa {scores.kappa:.3f}",
        fontsize=11,
    )
    return fig


def _preview_shape(window: Window, max_px: int) -> tuple[int, int]:
    factor = max(1.0, max(window.height, window.width) / max_px)
    return max(1, round(window.height / factor)), max(1, round(window.width / factor))


def result_figure(
    prediction: Path | str,
    reference: Path | str,
    *,
    image: Path | str | None = None,
    extent: tuple[float, float, float, float] | None = None,
    max_px: int = FIGURE_MAX_PX,
) -> Figure:
    """Input | reference | prediction side by side (without ``image``: reference | prediction), with a legend.

    The whole prediction grid, downsampled so the longest side is at most
    ``max_px``, or ``extent`` (in the prediction's CRS). Classes are never averaged.
    """
    panels: list[tuple[str, np.ndarray]] = []
    with ExitStack() as stack:
        pred_src = stack.enter_context(open_raster(prediction))
        window = Window(0, 0, pred_src.width, pred_src.height)
        if extent is not None:
            window = extent_window(pred_src, extent)
        shape = _preview_shape(window, max_px)
        if image is not None:
            img_src = stack.enter_context(
                onto_grid(image, pred_src, resampling=Resampling.bilinear, what="true-colour image")
            )
            check_bands(img_src, (1, 2, 3), what="true-colour image")
            names = bands.band_names(img_src, range(1, img_src.count + 1))
            if not any(bands.sentinel2_name(n) for n in names):
                names = bands.RGB + names[3:]  # no band names: the first three are true colour, as always
            shown = [i + 1 for i in bands.display_positions(names)]
            raw = img_src.read(shown, window=window, out_shape=(3, *shape), resampling=Resampling.average)
            panels.append(band_picture(raw, [names[i - 1] for i in shown], img_src.dtypes[0]))
        ref_src = stack.enter_context(onto_grid(reference, pred_src, what="reference SCL"))
        ref = ref_src.read(1, window=window, out_shape=shape, resampling=Resampling.nearest)
        pred = pred_src.read(1, window=window, out_shape=shape, resampling=Resampling.nearest)
    panels += [("Reference SCL", scl_rgb(ref)), ("Predicted SCL", scl_rgb(pred))]
    codes = [int(c) for c in np.union1d(np.unique(ref), np.unique(pred)) if c in scl.BY_CODE]
    panel_in = 4.6
    title_in, legend_in = 0.45, 0.3 + 0.22 * -(-len(codes) // 4)
    height_in = panel_in * shape[0] / shape[1] + title_in + legend_in
    fig = Figure(figsize=(panel_in * len(panels) + 0.2, height_in), dpi=DPI)
    axes = fig.subplots(1, len(panels))
    for ax, (title, picture) in zip(np.atleast_1d(axes), panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    scl_legend(fig, codes, ncol=4)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - title_in / height_in, bottom=legend_in / height_in, wspace=0.04)
    return fig


def figure_png(fig: Figure) -> bytes:
    """A figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def html_report(evaluation: Evaluation, figures: dict[str, bytes], outputs: dict[str, Any]) -> str:
    """A self-contained HTML page: headline numbers, per-class table, figures and the files written."""
    s = evaluation.scores
    rows = []
    for row, cls in zip(s.per_class(), scl.LEARNED):
        rows.append(
            "<tr>"
            f'<td><span class="swatch" style="background:{cls.color}"></span>{cls.code}</td>'
            f"<td>{escape(cls.name)}</td>"
            f"<td>{_number(row['iou'])}</td><td>{_number(row['precision'])}</td>"
            f"<td>{_number(row['recall'])}</td><td>{_number(row['f1'])}</td>"
            f"<td>{row['reference_pixels']:,}</td><td>{row['predicted_pixels']:,}</td>"
            "</tr>"
        )
    pictures = "\n".join(
        f'<h2>{escape(title)}</h2>\n<img alt="{escape(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}">'
        for title, png in figures.items()
    )
    files = "\n".join(
        f"<li>{escape(name.replace('_', ' '))}: <code>{escape(str(path))}</code></li>"
        for name, path in outputs.items()
        if path is not None and name != "report"
    )
    left, bottom, right, top = evaluation.bounds
    total = int(s.matrix.sum())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>SCL DeepLab evaluation: {escape(evaluation.prediction.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f0f0f0; }}
.classes td:nth-child(2), .classes th:nth-child(2) {{ text-align: left; }}
.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #444; margin-right: 0.4em;
  vertical-align: middle; }}
.big td {{ font-size: 1.2em; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
code {{ font-size: 0.9em; }}
</style>
</head>
<body>
<h1>SCL DeepLab evaluation</h1>
<p>Prediction <code>{escape(str(evaluation.prediction))}</code><br>
Reference <code>{escape(str(evaluation.reference))}</code><br>
Compared {evaluation.width:,} &times; {evaluation.height:,} px on the prediction's grid ({escape(evaluation.crs)}),
bounds {left:.1f}, {bottom:.1f}, {right:.1f}, {top:.1f}. {total:,} pixels have a class in both
(code 0, no data, is left out); they disagree on {evaluation.disagreeing_pixels:,}.</p>
<table class="big">
<tr><th>Pixel accuracy</th><th>Mean IoU</th><th>Cohen's kappa</th></tr>
<tr><td>{_number(s.pixel_accuracy)}</td><td>{_number(s.mean_iou)}</td><td>{_number(s.kappa)}</td></tr>
</table>
<p>Mean IoU averages the classes present in the reference or the prediction; "–" marks a class absent from both.</p>
<h2>Per class</h2>
<table class="classes">
<tr><th>Code</th><th>Class</th><th>IoU</th><th>Precision</th><th>Recall</th><th>F1</th>
<th>Reference pixels</th><th>Predicted pixels</th></tr>
{chr(10).join(rows)}
</table>
{pictures}
<h2>Files</h2>
<ul>
{files}
</ul>
<p><small>Written {_dt.datetime.now().isoformat(timespec="seconds")} by SCL DeepLab.</small></p>
</body>
</html>
"""


def write_all(
    evaluation: Evaluation,
    paths: dict[str, Path],
    *,
    final: dict[str, Any],
    image: Path | str | None = None,
    extent: tuple[float, float, float, float] | None = None,
) -> None:
    """Write the requested evaluation outputs to ``paths`` (keys as in ``EvaluationOutputs``).

    ``final`` holds where the files will end up, for the report's list of files.
    """
    figures: dict[str, bytes] = {}
    if {"matrix_png", "report"} & paths.keys():
        figures["Confusion matrix"] = figure_png(confusion_figure(evaluation.scores))
    if {"figure", "report"} & paths.keys():
        figures["Input, reference and prediction"] = figure_png(
            result_figure(evaluation.prediction, evaluation.reference, image=image, extent=extent)
        )
    if "matrix_csv" in paths:
        write_matrix_csv(paths["matrix_csv"], evaluation.scores.matrix)
    if "matrix_png" in paths:
        paths["matrix_png"].write_bytes(figures["Confusion matrix"])
    if "figure" in paths:
        paths["figure"].write_bytes(figures["Input, reference and prediction"])
    if "metrics_json" in paths:
        paths["metrics_json"].write_text(json.dumps(evaluation.to_dict(), indent=2), encoding="utf-8")
    if "report" in paths:
        paths["report"].write_text(html_report(evaluation, figures, final), encoding="utf-8")
