"""Batch prediction over a scene list: list reading, sharding, the skip rule, manifests, torchrun on 2 CPU ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.atomic import remove_stale_parts
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.model_core.prediction import predict
from scl_deeplab.model_core.prediction.batch_predict import (
    FORMAT,
    check_names,
    completed_entries,
    fingerprint,
    is_complete,
    merge,
    output_paths,
    rank_manifest_path,
    read_scene_list,
    shard,
    write_json,
)
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.model_core.training.distributed import Ranks
from scl_deeplab.tests.models import one_torch_thread

CRS = "EPSG:32633"
TRANSFORM = from_origin(399960.0, 5000040.0, 20.0, 20.0)
CONFIG = PredictConfig(tiling=TilingConfig(64, 0), device="cpu", precision="float32")
SMALL = ["--tile-size", "64", "--overlap", "0", "--device", "cpu", "--precision", "float32"]


def write_scene(path: Path, size: int = 64, *, bands: int = 3, seed: int = 0) -> Path:
    data = np.random.default_rng(seed).integers(1, 255, size=(bands, size, size), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint8", crs=CRS,
                       transform=TRANSFORM) as dst:
        dst.write(data)
    return path


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


# --- the scene list -------------------------------------------------------------------------------------------------

def test_scene_list_file_skips_comments_and_blank_lines_and_reads_relative_paths(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "scenes").mkdir()
    far = tmp_path / "elsewhere" / "z.tif"
    listing = tmp_path / "lists" / "scenes.txt"
    listing.write_text(f"# June\n\n../scenes/b.tif\n  ../scenes/a.tif  \n{far}\n# ../scenes/c.tif\n../scenes/a.tif\n")
    assert read_scene_list(listing) == [far, tmp_path / "scenes" / "a.tif", tmp_path / "scenes" / "b.tif"]


def test_scene_list_folder_takes_its_scene_files_sorted(tmp_path):
    for name in ("b.TIF", "a.tif", "c.vrt", "d.jp2", "e.tiff", "notes.txt", "a.tif.aux.xml", ".a.part.tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.tif").mkdir()
    assert [p.name for p in read_scene_list(tmp_path)] == ["a.tif", "b.TIF", "c.vrt", "d.jp2", "e.tiff"]


def test_missing_or_empty_scene_list_is_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_scene_list(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    with pytest.raises(InputError, match="lists no scenes"):
        read_scene_list(tmp_path / "empty.txt")


def test_scenes_that_would_share_an_output_name_are_refused(tmp_path):
    check_names([tmp_path / "a" / "x.tif", tmp_path / "b" / "y.tif"])
    with pytest.raises(InputError, match="same output name"):
        check_names([tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif"])
    assert output_paths(tmp_path / "a" / "x.tif", tmp_path / "out") == (
        tmp_path / "out" / "x_scl.tif", tmp_path / "out" / "x_confidence.tif")


def test_stale_temporary_files_of_an_output_are_removed_and_nothing_else(tmp_path):
    names = [".x_scl.k3j.part.tif", ".x_scl.k3j.part.tif.aux.xml",  # the two of x_scl.tif
             ".x_scl_scl.q1.part.tif", "x_scl.tif", ".y.a.part.tif"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_parts(tmp_path / "x_scl.tif") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


# --- sharding -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 3, 7, 8])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shards_take_every_scene_exactly_once_in_turn(count, world_size):
    scenes = [Path(f"/s/{i:02d}.tif") for i in range(count)]
    shards = [shard(scenes, rank, world_size) for rank in range(world_size)]
    assert sorted(p for s in shards for p in s) == scenes
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    for rank, share in enumerate(shards):
        assert share == [scenes[i] for i in range(rank, count, world_size)]


def test_ranks_come_from_the_torchrun_environment():
    assert Ranks.from_env({}) == Ranks(0, 1, 0, 1) and not Ranks.from_env({}).distributed
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert Ranks.from_env(env) == Ranks(3, 4, 1, 2) and Ranks.from_env(env).distributed
    assert Ranks.from_env(env).tag == "[rank 3/4]"
    with pytest.raises(InputError, match="outside WORLD_SIZE"):
        Ranks.from_env({**env, "RANK": "4"})
    with pytest.raises(InputError, match="WORLD_SIZE"):
        Ranks.from_env({"RANK": "0"})


# --- the skip rule --------------------------------------------------------------------------------------------------

def test_skip_rule_needs_a_done_entry_with_the_same_fingerprint_and_the_outputs(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights")
    fp = fingerprint(tmp_path / "model.pt", CONFIG)
    out = tmp_path / "a_scl.tif"
    out.write_bytes(b"complete")
    entries = [{"scene": "/s/a.tif", "status": "done"}, {"scene": "/s/b.tif", "status": "failed"},
               {"scene": "/s/c.tif", "status": "skipped"}]
    write_json(rank_manifest_path(tmp_path, 1), {"format": FORMAT, "fingerprint": fp, "scenes": entries})
    (tmp_path / "manifest" / "rank-00002.json").write_text("{ half a manif")  # unreadable: ignored
    done = completed_entries(tmp_path, fp)
    assert sorted(done) == ["/s/a.tif", "/s/c.tif"]
    assert is_complete(done["/s/a.tif"], [out, None])
    assert not is_complete(done["/s/a.tif"], [out, tmp_path / "a_confidence.tif"])  # confidence asked, missing
    assert not is_complete(done["/s/c.tif"], [tmp_path / "c_scl.tif", None])  # listed, file gone
    assert not is_complete(None, [out, None])  # a file nobody listed
    assert not is_complete({"status": "failed"}, [out, None])
    # Another model, or settings that change pixels: nothing counts as done.
    (tmp_path / "model.pt").write_bytes(b"other weights")
    assert completed_entries(tmp_path, fingerprint(tmp_path / "model.pt", CONFIG)) == {}
    other = PredictConfig(tiling=TilingConfig(64, 8), device="cpu")
    (tmp_path / "model.pt").write_bytes(b"weights")
    assert completed_entries(tmp_path, fingerprint(tmp_path / "model.pt", other)) == {}


def test_merge_lists_every_scene_once_sorted_with_counts():
    docs = [{"scenes": [{"scene": "/s/c", "status": "done"}, {"scene": "/s/a", "status": "failed"}]},
            {"scenes": [{"scene": "/s/b", "status": "skipped"}]}]
    merged = merge(docs, {"model_sha256": "x"}, 2)
    assert [e["scene"] for e in merged["scenes"]] == ["/s/a", "/s/b", "/s/c"]
    assert merged["counts"] == {"done": 1, "skipped": 1, "failed": 1}
    assert (merged["format"], merged["world_size"]) == (FORMAT, 2)


# --- one process: the command line without torchrun -----------------------------------------------------------------

def test_one_process_records_a_failed_scene_and_goes_on(tmp_path, deeplab_checkpoint, monkeypatch, capsys):
    from scl_deeplab.model_core.cli.main import main

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "in").mkdir()
    write_scene(tmp_path / "in" / "a.tif", seed=1)
    write_scene(tmp_path / "in" / "b.tif", bands=1)  # the model needs 3 bands
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a_scl.x1y2.part.tif").write_bytes(b"half")  # left by a killed run
    code = main(["predict", "--scenes", str(tmp_path / "in"), "--model", str(deeplab_checkpoint), *SMALL,
                 "--output-folder", str(out), "--confidence"])
    assert code == 1
    summary = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["failed"] == 1 and manifest["counts"] == {"done": 1, "skipped": 0, "failed": 1}
    a, b = manifest["scenes"]
    assert (a["status"], a["tiles"], a["rank"], a["output"]) == ("done", 1, 0, str(out / "a_scl.tif"))
    assert a["confidence"] == str(out / "a_confidence.tif")
    assert b["status"] == "failed" and "1 band" in b["message"] and b["output"] is None
    assert sorted(p.name for p in out.glob("*.tif")) == ["a_confidence.tif", "a_scl.tif"]  # no .part files either
    assert set(np.unique(read(out / "a_scl.tif"))) <= set(scl.learned_codes())
    assert json.loads(rank_manifest_path(out, 0).read_text())["scenes"] == manifest["scenes"]


def test_scene_mode_options_are_checked(tmp_path, deeplab_checkpoint):
    from scl_deeplab.model_core.cli.main import main

    write_scene(tmp_path / "a.tif")
    base = ["predict", "--model", str(deeplab_checkpoint), *SMALL]
    assert main([*base, "--scenes", str(tmp_path), "--output", str(tmp_path / "x.tif")]) == 1
    assert main([*base, "--scenes", str(tmp_path), "--output-folder", str(tmp_path)]) == 1  # would eat its outputs
    assert main([*base, "--input", str(tmp_path / "a.tif"), "--output-folder", str(tmp_path / "o")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


# --- two ranks under torchrun ---------------------------------------------------------------------------------------

def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "scl_deeplab.model_core", "predict", *args]
    return subprocess.run(command, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)


def test_two_ranks_share_three_scenes_match_one_process_and_a_rerun_skips(tmp_path, deeplab_checkpoint):
    scenes = [write_scene(tmp_path / f"{name}.tif", seed=i) for i, name in enumerate("abc")]
    write_scene(tmp_path / "d.tif", bands=1)  # fails on its rank; the others go on
    listing = tmp_path / "scenes.txt"
    listing.write_text("# three scenes and a bad one\nc.tif\nd.tif\na.tif\n\nb.tif\n")
    out = tmp_path / "out"
    args = ["--scenes", str(listing), "--model", str(deeplab_checkpoint), *SMALL, "--output-folder", str(out)]

    run = torchrun(*args)
    assert run.returncode != 0
    assert sorted(p.name for p in out.glob("*.tif")) == ["a_scl.tif", "b_scl.tif", "c_scl.tif"]
    assert "[rank 0/2]" in run.stderr and "[rank 1/2]" in run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # Sorted scenes a, b, c, d go to ranks 0, 1, 0, 1.
    assert [(Path(e["scene"]).name, e["rank"], e["status"]) for e in manifest["scenes"]] == [
        ("a.tif", 0, "done"), ("b.tif", 1, "done"), ("c.tif", 0, "done"), ("d.tif", 1, "failed")]
    assert manifest["world_size"] == 2 and manifest["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    assert "1 band" in manifest["scenes"][3]["message"]
    assert json.loads(run.stdout)["predictions"] == manifest["scenes"]  # rank 0's whole summary, once
    assert sorted(p.name for p in (out / "manifest").iterdir()) == ["rank-00000.json", "rank-00001.json"]

    # One process, same model and settings: the same bytes.
    try:
        with one_torch_thread():
            for scene in scenes:
                predict_scene_from_checkpoint(scene, deeplab_checkpoint, tmp_path / f"{scene.stem}_single.tif", CONFIG)
    finally:
        predict.clear_model_cache()
    for scene in scenes:
        sharded, single = out / f"{scene.stem}_scl.tif", tmp_path / f"{scene.stem}_single.tif"
        assert (read(sharded) == read(single)).all()
        assert sharded.read_bytes() == single.read_bytes()

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*_scl.tif")}
    listing.write_text("c.tif\na.tif\nb.tif\n")  # the user drops the bad scene and reruns
    again = torchrun(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("skipped: ") == 3
    rerun = json.loads((out / "manifest.json").read_text())
    assert [(Path(e["scene"]).name, e["rank"], e["status"]) for e in rerun["scenes"]] == [
        ("a.tif", 0, "skipped"), ("b.tif", 1, "skipped"), ("c.tif", 0, "skipped")]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_scl.tif")} == mtimes
