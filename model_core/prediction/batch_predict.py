"""Many scenes with one model load per process, shared out across torchrun ranks.

``python -m scl_deeplab.model_core predict --scenes LIST --output-folder DIR``
predicts every scene of LIST (a text file or a folder) into DIR as
``<stem>_scl.tif`` (and ``<stem>_confidence.tif`` with ``--confidence``).
Under ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK in the environment) rank r of
w takes scenes r, r + w, r + 2w, ... of the sorted list, on GPU LOCAL_RANK
where CUDA is present, else on the CPU with its share of the cores (cores /
LOCAL_WORLD_SIZE threads, whatever OMP_NUM_THREADS torchrun set; see
``distributed.py``). Without
torchrun one process does every scene. A scene that fails is recorded with its
message and the others go on; the exit code is then 1.

Each rank rewrites ``DIR/manifest/rank-NNNNN.json`` after every scene; when all
ranks are done they meet (gloo on CPU, NCCL on CUDA) and rank 0 writes
``DIR/manifest.json`` with every scene once. For several nodes, DIR must be on
a filesystem they share.

Skip rule: unless ``--overwrite``, a scene is skipped when a manifest in DIR
(a rank's or the combined one) lists it as done or skipped with the same
model (SHA-256) and settings, and its outputs exist in DIR. Outputs are renamed
into place only once complete (``atomic``), so an existing output is whole; the
manifest keeps files of another model or other settings from counting. A rerun
after a failed node redoes only the scenes nobody finished.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_file, remove_stale_parts
from ..data.scenes import list_entries, listed_path
from ..errors import Canceled, CheckpointError, InputError, SclDeepLabError
from ..training import distributed

if TYPE_CHECKING:
    from .config import PredictConfig

log = logging.getLogger("scl_deeplab")

SCENE_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2")
FORMAT = "scl-deeplab-predictions"
VERSION = 1
COMPLETE = ("done", "skipped")
# Ranks wait for the slowest one at the end; scenes differ in size, so allow long waits.
MEET_TIMEOUT = datetime.timedelta(hours=24)


def read_scene_list(source: Path | str) -> list[Path]:
    """Scenes from a text file (one path a line; blank lines and # comments skipped; relative to the file)
    or from a folder (its .tif/.tiff/.vrt/.jp2 files), absolute, without duplicates, sorted."""
    source = Path(source).expanduser()
    if source.is_dir():
        found = [p for p in source.iterdir()
                 if p.is_file() and p.suffix.lower() in SCENE_SUFFIXES and not p.name.startswith(".")]
    elif source.is_file():
        found = [listed_path(source, text) for _, text in list_entries(source)]
    else:
        raise InputError(f"The scene list {source} does not exist. Give a text file with one scene path a line, "
                         f"or a folder of {'/'.join(SCENE_SUFFIXES)} scenes.")
    scenes = sorted({p.resolve() for p in found})
    if not scenes:
        raise InputError(f"{source} lists no scenes. Add scene paths (one a line) or {'/'.join(SCENE_SUFFIXES)} files.")
    return scenes


def output_paths(scene: Path, folder: Path) -> tuple[Path, Path]:
    """The SCL and confidence outputs of a scene in the output folder."""
    return folder / f"{scene.stem}_scl.tif", folder / f"{scene.stem}_confidence.tif"


def check_names(scenes: Sequence[Path]) -> None:
    """Refuse scenes whose outputs would share a name (same stem in two folders, or x.tif beside x.vrt)."""
    by_stem: dict[str, list[str]] = {}
    for scene in scenes:
        by_stem.setdefault(scene.stem, []).append(str(scene))
    clashes = [paths for paths in by_stem.values() if len(paths) > 1]
    if clashes:
        raise InputError(f"These scenes would write the same output name: {clashes[0]}. "
                         "Rename one, or predict them into separate output folders.")


def shard(scenes: Sequence[Path], rank: int, world_size: int) -> list[Path]:
    """Rank ``rank``'s scenes: every ``world_size``-th of the list, starting at ``rank``."""
    return list(scenes[rank::world_size])


def fingerprint(checkpoint: Path | str, config: PredictConfig) -> dict[str, Any]:
    """What makes outputs comparable between runs: the model's bytes and the settings that change pixels."""
    digest = hashlib.sha256()
    try:
        with open(checkpoint, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
    except OSError as exc:
        raise CheckpointError(
            f"Cannot read the model checkpoint {checkpoint}: {exc.strerror}. Pick its .pt file."
        ) from exc
    return {"model_sha256": digest.hexdigest(), "tiling": asdict(config.tiling),
            "bands": list(config.bands) if config.bands else None,
            "extent": list(config.extent) if config.extent else None, "fast": bool(config.fast),
            "precision": config.precision}


def rank_manifest_path(folder: Path, rank: int) -> Path:
    """``DIR/manifest/rank-NNNNN.json``."""
    return folder / "manifest" / f"rank-{rank:05d}.json"


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a JSON document atomically (readers see the old or the new one, never half)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def completed_entries(folder: Path, fp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Scene -> its done/skipped entry, from every manifest in ``folder`` written with the same fingerprint."""
    found: dict[str, dict[str, Any]] = {}
    for path in [folder / "manifest.json", *sorted((folder / "manifest").glob("rank-*.json"))]:
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT or doc.get("fingerprint") != fp:
                continue
            found.update({e["scene"]: e for e in doc["scenes"] if e.get("status") in COMPLETE})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Unreadable means unknown: its scenes are predicted again, which is safe.
            log.warning("Ignoring the manifest %s (%s); its scenes will be predicted again.", path, exc)
    return found


def is_complete(entry: dict[str, Any] | None, outputs: Sequence[Path | None]) -> bool:
    """The skip rule: a manifest lists the scene as done or skipped, and every output it needs exists."""
    return entry is not None and entry.get("status") in COMPLETE and all(p is None or p.is_file() for p in outputs)


def merge(documents: Sequence[dict[str, Any]], fp: dict[str, Any], world_size: int) -> dict[str, Any]:
    """The combined manifest: every rank's scenes, sorted by scene, with counts by status."""
    entries = sorted((e for doc in documents for e in doc["scenes"]), key=lambda e: e["scene"])
    counts = {status: sum(e["status"] == status for e in entries) for status in ("done", "skipped", "failed")}
    return {"format": FORMAT, "version": VERSION, "fingerprint": fp, "world_size": world_size,
            "counts": counts, "scenes": entries}


class RankProgress:
    """Log lines on stderr prefixed with the rank and the scene; percent every 25 %."""

    def __init__(self, tag: str) -> None:
        self.tag, self.scene, self._last = tag, "", 0.0

    def start(self, scene: str) -> None:
        self.scene, self._last = scene, 0.0

    def set_progress(self, percent: float) -> None:
        if percent >= self._last + 25:
            self._last = percent
            log.info("%s %s: %.0f%%", self.tag, self.scene, percent)

    def is_canceled(self) -> bool:
        return False

    def info(self, message: str) -> None:
        log.info("%s %s: %s", self.tag, self.scene, message)

    def warn(self, message: str) -> None:
        log.warning("%s %s: %s", self.tag, self.scene, message)


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did, over all ranks: the combined manifest, its entries and how many failed."""

    manifest: Path
    entries: list[dict[str, Any]]
    failed: int


def predict_one(scene: Path, checkpoint: Path, folder: Path, config: PredictConfig, *, confidence: bool,
                rank: int, progress: RankProgress) -> dict[str, Any]:
    """Predict one scene into the folder; a failure becomes a "failed" entry with its message."""
    from .predict import predict_scene_from_checkpoint

    out, conf = output_paths(scene, folder)
    if remove_stale_parts(out) + remove_stale_parts(conf):  # this scene is ours alone
        progress.info("removed the temporary files of an earlier, interrupted run")
    entry: dict[str, Any] = {"scene": str(scene), "rank": rank, "status": "failed", "output": None,
                             "confidence": None, "tiles": None, "seconds": 0.0, "device": config.device,
                             "message": None}
    started = time.perf_counter()
    try:
        result = predict_scene_from_checkpoint(scene, checkpoint, out, config,
                                               confidence_path=conf if confidence else None, progress=progress)
    except Canceled:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad scene must not end the batch; it is recorded and logged
        entry.update(message=str(exc) or type(exc).__name__, seconds=round(time.perf_counter() - started, 2))
        if isinstance(exc, SclDeepLabError):
            progress.warn(f"failed: {exc}")
        else:
            log.exception("%s %s: failed", progress.tag, progress.scene)
        return entry
    entry.update(status="done", output=str(result.output), tiles=result.tiles, device=result.device,
                 confidence=str(result.confidence) if result.confidence else None, seconds=round(result.seconds, 2))
    progress.info(f"done: {out.name} in {result.seconds:.1f} s")
    return entry


def predict_scenes(scene_list: Path | str, checkpoint: Path | str, folder: Path | str, config: PredictConfig, *,
                   confidence: bool = False, overwrite: bool = False, ranks: distributed.Ranks | None = None,
                   report: Callable[[BatchResult], None] | None = None) -> BatchResult:
    """Predict this rank's share of the scenes into ``folder``, then meet the other ranks and merge manifests.

    ``config`` is a ``predict.PredictConfig``; its device is resolved per rank.
    ``report`` runs on rank 0 once manifest.json is written, before the ranks
    part: torchrun stops the others as soon as one exits with an error, and
    this way a failed batch still gets its whole summary out.
    """
    from ..net.device import pick_device

    ranks = ranks or distributed.Ranks.from_env()
    folder, checkpoint = Path(folder).expanduser().resolve(), Path(checkpoint).expanduser()
    if Path(scene_list).expanduser().resolve() == folder:
        raise InputError("The output folder is the scene folder; the outputs would become scenes of the next run. "
                         "Choose another --output-folder.")
    scenes = read_scene_list(scene_list)
    check_names(scenes)
    device = distributed.device_for(pick_device(config.device), ranks)  # DeviceError now, on every rank
    config = replace(config, device=str(device))
    fp = fingerprint(checkpoint, config)
    progress = RankProgress(ranks.tag)
    mine = shard(scenes, ranks.rank, ranks.world_size)
    previous = {} if overwrite else completed_entries(folder, fp)
    with distributed.process_group(device, ranks, timeout=MEET_TIMEOUT):
        distributed.barrier()  # every rank has read the old manifests before any is rewritten
        log.info("%s %d of %d scenes on %s", ranks.tag, len(mine), len(scenes), config.device)
        entries: list[dict[str, Any]] = []
        document = {"format": FORMAT, "version": VERSION, "fingerprint": fp, "rank": ranks.rank,
                    "world_size": ranks.world_size, "scenes": entries}
        own = rank_manifest_path(folder, ranks.rank)
        for i, scene in enumerate(mine, start=1):
            progress.start(f"scene {i}/{len(mine)} {scene.name}")
            out, conf = output_paths(scene, folder)
            old = previous.get(str(scene))
            if is_complete(old, [out, conf if confidence else None]):
                progress.info(f"skipped: {out.name} is complete")
                entries.append({**old, "rank": ranks.rank, "status": "skipped", "seconds": 0.0, "message": None,
                                "output": str(out), "confidence": str(conf) if conf.is_file() else None})
            else:
                entries.append(predict_one(scene, checkpoint, folder, config, confidence=confidence,
                                           rank=ranks.rank, progress=progress))
            write_json(own, document)
        if not mine:
            write_json(own, document)
        merged = merge(distributed.gather_objects(document), fp, ranks.world_size)
        counts = merged["counts"]
        result = BatchResult(manifest=folder / "manifest.json", entries=merged["scenes"], failed=counts["failed"])
        log.info("%s done: %d predicted, %d skipped, %d failed (all ranks)", ranks.tag, counts["done"],
                 counts["skipped"], counts["failed"])
        if ranks.rank == 0:
            write_json(result.manifest, merged)
            for stale in (folder / "manifest").glob("rank-*.json"):  # from an earlier run with more ranks
                number = stale.stem.removeprefix("rank-")
                if number.isdigit() and int(number) >= ranks.world_size:
                    stale.unlink(missing_ok=True)
            if report is not None:
                report(result)
        distributed.barrier()  # rank 0 has written and reported before any rank exits
    return result
