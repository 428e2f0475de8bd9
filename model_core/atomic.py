"""Write outputs so that a failure or a cancel never leaves a half-written file.

Everything is written to a temporary name beside the destination, then renamed
into place in one step once complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError


def _check_parent(final: Path) -> None:
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder {parent}: {exc.strerror}. Choose another output path.") from exc
    if not os.access(parent, os.W_OK):
        raise OutputError(f"Cannot write to {parent}: permission denied. Choose another output path.")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it replaces ``final``.

    On any exception (a cancel included) the temporary file is removed and
    ``final`` is left as it was.
    """
    final = Path(final)
    _check_parent(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private; outputs get the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
        # GDAL may leave sidecars of the temporary name (.aux.xml, .ovr).
        for sidecar in final.parent.glob(tmp.name + ".*"):
            sidecar.unlink(missing_ok=True)


def remove_stale_parts(final: Path | str) -> int:
    """Remove temporary files of ``final`` left by a killed process (a signal skips the clean-up above).

    Only call this while no other process is writing ``final``. Returns how many were removed.
    """
    final = Path(final)
    stale = list(final.parent.glob(f".{final.stem}.*.part{final.suffix}*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def atomic_folder(final: Path | str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it becomes ``final``.

    A ``final`` that exists and is not empty is refused unless ``overwrite``.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final} exists and is a file, not a folder. Choose another output folder.")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise OutputError(
            f"The output folder {final} is not empty. Choose an empty or new folder, or allow overwriting."
        )
    _check_parent(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
