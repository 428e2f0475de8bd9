"""Outputs appear whole or not at all."""

from __future__ import annotations

import pytest
from scl_deeplab.model_core.atomic import atomic_file, atomic_folder
from scl_deeplab.model_core.errors import OutputError


def test_atomic_file_replaces_on_success(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with atomic_file(final) as tmp:
        tmp.write_text("new")
        assert final.read_text() == "old"
    assert final.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_file_keeps_old_file_on_error(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_folder_refuses_non_empty_folder(tmp_path):
    final = tmp_path / "patches"
    final.mkdir()
    (final / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        with atomic_folder(final):
            pass
    assert (final / "keep.txt").read_text() == "mine"


def test_atomic_folder_leaves_nothing_on_error(tmp_path):
    final = tmp_path / "patches"
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(final) as tmp:
            (tmp / "a.tif").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_overwrite_replaces_content(tmp_path):
    final = tmp_path / "patches"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with atomic_folder(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]


def test_unwritable_parent_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="Cannot create the folder"):
        with atomic_file(blocker / "sub" / "out.tif"):
            pass


def test_outputs_get_ordinary_permissions(tmp_path):
    final = tmp_path / "out.tif"
    with atomic_file(final) as tmp:
        tmp.write_bytes(b"x")
    assert final.stat().st_mode & 0o044 == 0o044  # readable by group and others, like any file


def test_stale_parts_of_the_same_output_are_removed_at_the_next_write(tmp_path):
    final = tmp_path / "m.pt"
    left = [".m.k3j9x2ab.part.pt", ".m.q1.part.pt.aux.xml"]  # a killed run's
    others = [".m.last.k3j9x2ab.part.pt", ".mm.a1.part.pt", ".m.a1.part.tif", "m.last.pt"]  # not m.pt's
    for name in left + others:
        (tmp_path / name).write_bytes(b"x")
    with atomic_file(final) as tmp:
        tmp.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others + ["m.pt"])


def test_stale_part_folders_are_removed_and_a_replaced_folder_goes_only_once_the_new_one_is_in(tmp_path):
    final = tmp_path / "patches"
    final.mkdir()
    (final / "old.txt").write_text("old")
    stale = tmp_path / ".patches.ab12cd.part"
    stale.mkdir()
    (stale / "half.tif").write_bytes(b"x")
    (tmp_path / ".patches.x.y.part").mkdir()  # not a temporary folder of "patches"
    with atomic_folder(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".patches.x.y.part", "patches"]
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_full_disk_while_saving_a_checkpoint_says_so_and_keeps_the_earlier_one(tmp_path):
    import torch
    from scl_deeplab.model_core.net.checkpoint import load_checkpoint, save_checkpoint
    from scl_deeplab.tests.full_disk import fill, tiny_disk

    with tiny_disk(tmp_path / "disk", 2048) as disk:
        save_checkpoint(disk / "m.pt", {"w": torch.zeros(10)}, {"epoch": 1})
        fill(disk, 64)
        with pytest.raises(OutputError, match=f"No space left on {disk} while writing m.pt"):
            save_checkpoint(disk / "m.pt", {"w": torch.randn(200_000)}, {"epoch": 2})
        assert load_checkpoint(disk / "m.pt")["meta"]["epoch"] == 1
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin", "m.pt"]


def test_an_empty_folder_that_cannot_be_replaced_is_a_clear_error(tmp_path):
    import shutil
    import subprocess

    final = tmp_path / "patches"
    final.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(final)]).returncode != 0:
        pytest.skip("marking a folder immutable needs chattr on a file system that supports it")
    try:
        with pytest.raises(OutputError, match=f"Cannot replace the folder {final}: Operation not permitted"):
            with atomic_folder(final, overwrite=True) as tmp:
                (tmp / "new.txt").write_text("new")
        assert final.is_dir() and list(final.iterdir()) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["patches"]
    finally:
        subprocess.run(["chattr", "-i", str(final)])


def test_final_path_names_the_output_a_temporary_file_stands_for(tmp_path):
    from scl_deeplab.model_core.atomic import final_path

    with atomic_file(tmp_path / "pred.v2.tif") as tmp:
        assert final_path(tmp) == tmp_path / "pred.v2.tif"
    assert final_path(tmp_path / "pred.tif") == tmp_path / "pred.tif"
