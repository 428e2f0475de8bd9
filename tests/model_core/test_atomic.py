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
